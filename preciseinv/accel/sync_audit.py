"""Which operations would stall a GPU: a dispatch-level audit that works on any device, CPU included.

On a GPU the host queues kernels ahead of the device; these operations make it wait for the device to finish
(or copy host memory into the stream) and so cap the speed at the Python overhead of one iteration:

- reading a tensor's value on the host (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``): ``_local_scalar_dense``;
- error checks that read a device flag (``torch.linalg.solve``; ``solve_ex`` does not);
- data-dependent shapes: ``nonzero``, ``masked_select``, indexing or assigning with a boolean mask;
- creating a tensor from host data (``torch.tensor([...], device=...)``): ``lift_fresh``;
- moving a tensor to a device (``.to(device=...)``; from host memory that is a synchronising copy).

    with SyncAudit() as audit:
        loop.run(problem)
    audit.events  # [(op name, where it was called from)]
    with audit.paused():  # the loop's sanctioned sync points
        ...
"""

from __future__ import annotations

import contextlib
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
HOST_READS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
              aten.lift_fresh.default, aten.lift_fresh_copy.default,
              aten._linalg_check_errors.default}  # torch.linalg.solve / cholesky / inv read their info flag
MASK_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}


def _is_bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


class SyncAudit(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.events: list[tuple[str, str]] = []
        self._paused = 0

    @contextlib.contextmanager
    def paused(self):
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def _flags(self, func, args, kwargs) -> bool:
        if func in HOST_READS:
            return True
        if func in MASK_INDEXING:
            return _is_bool_index(args)
        if func is aten._to_copy.default:
            return "device" in kwargs
        if func is aten.copy_.default:
            return args[0].device != args[1].device
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self._paused and self._flags(func, args, kwargs or {}):
            frames = [f for f in traceback.extract_stack()[:-1] if "preciseinv" in f.filename or "diffusers" in f.filename]
            where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
            self.events.append((str(func), where))
        return func(*args, **(kwargs or {}))
