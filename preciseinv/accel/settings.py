"""Speed settings, applied in one place for ``fit``, the Python API and the benchmark.

- TF32 for fp32 matrix products and convolutions on a GPU (always on: the solver's own arithmetic is fp32 and TF32
  loses nothing the residual can see at the paper's eta; the network runs under the preset's autocast anyway);
- ``channels_last`` memory format for a convolutional denoiser (UNets; cuDNN's bf16/fp16 kernels are NHWC);
- ``compile``: ``torch.compile`` of the denoiser in place (``Module.compile``; the adapter keeps its module, so
  ``.config``, ``.dtype`` and ``.to`` work as before). Inductor makes the batch dimension dynamic after the second
  size it meets, so a shrinking working set costs one recompilation. A mode that records CUDA graphs
  (``reduce-overhead``, ``max-autotune``) records one per shape: the model is then marked ``static_shapes`` and the
  solver loop pads its working set to a few bucket sizes (``preciseinv.solvers.buckets``), so the graphs are reused
  across iterations, timesteps and batches;
- the compute precision: ``autocast(device, precision)`` for a preset's ``precision`` (Lightning's names;
  ``bf16-true`` / ``16-true``: no autocast, the weights in half: ``TRUE_HALF``).
"""

from __future__ import annotations

import contextlib

import torch

from preciseinv.errors import PreciseInvError

AUTOCAST = {"bf16": torch.bfloat16, "bf16-mixed": torch.bfloat16, "fp16": torch.float16, "16-mixed": torch.float16}
# Lightning's "true" half precisions, as this engine runs them: the networks' weights in half with no autocast
# (GroupNorm and softmax in half too), the solver in fp32 (Lightning alone would make eps* half as well)
TRUE_HALF = {"bf16-true": "bfloat16", "16-true": "float16"}
PRECISIONS = ("32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", *TRUE_HALF)  # Lightning's names run here


def check_precision(precision, also: tuple[str, ...] = ()) -> str:
    """The precision's name (None: 32-true); one that this engine does not run is one line."""
    name = "32-true" if precision is None else str(precision)
    if name not in PRECISIONS and name not in also:
        raise PreciseInvError(f"precision={name} is not one this engine runs: 32-true; 16-mixed or bf16-mixed "
                              "(autocast); 16-true or bf16-true (weights in half, the solver in fp32)")
    return name


def configure_backends() -> None:
    """TF32 matmuls and convolutions (no effect on a CPU). Idempotent."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")


def autocast(device: torch.device | str, precision: str):
    """The autocast context of a precision name (``bf16-mixed``, ``16-mixed``, ``bf16``, ``fp16``; anything else:
    fp32, no autocast)."""
    dtype = AUTOCAST.get(str(precision))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_options(compile: bool | str) -> dict:
    """``torch.compile`` keyword arguments of a ``model.compile`` value: true (inductor, default mode), a mode name,
    or a backend name (``eager``, ``aot_eager``: dynamo without inductor, to debug graph breaks)."""
    if compile is True or str(compile).lower() == "true":
        return {}
    name = str(compile)
    if name in MODES:
        return {"mode": name}
    backends = torch._dynamo.list_backends(exclude_tags=())
    if name in backends:
        return {"backend": name}
    raise PreciseInvError(f"model.compile must be true, false, a mode ({', '.join(MODES)}) or a torch.compile "
                          f"backend (inductor, eager, aot_eager, cudagraphs, ...); got {name!r}")


def uses_cuda_graphs(compile: bool | str) -> bool:
    """Whether a ``model.compile`` value records CUDA graphs (one per input shape: the solver then pads its working
    set to bucket sizes). Plain inductor compiles a dynamic batch dimension after the second size it meets and
    needs no padding."""
    options = compile_options(compile) if compile else {}
    return options.get("mode") in ("reduce-overhead", "max-autotune") or options.get("backend") == "cudagraphs"


def accelerate(model, compile: bool | str = False, channels_last: bool = False):
    """Apply the speed settings to a ``DiffusionModel``'s denoiser, in place; returns the model.

    ``compile``: False, True (torch.compile's default mode), a mode name (``"max-autotune-no-cudagraphs"``,
    ``"reduce-overhead"``: CUDA graphs, one per working-set bucket size) or a backend name (``compile_options``)."""
    accelerate_module(model.modules[model.denoiser_name], compile, channels_last)
    model.static_shapes = uses_cuda_graphs(compile)  # the solver loop pads its working set (solvers/buckets.py)
    return model


def accelerate_module(denoiser: torch.nn.Module, compile: bool | str = False, channels_last: bool = False):
    """``accelerate`` for a bare network (the benchmark's random-weight denoisers)."""
    options = compile_options(compile) if compile else {}  # a bad name fails here, before anything is changed
    configure_backends()
    if channels_last and any(isinstance(m, torch.nn.Conv2d) for m in denoiser.modules()):
        denoiser.to(memory_format=torch.channels_last)
    if compile and not getattr(denoiser, "_preciseinv_compiled", False):
        # room for a few (size, grad mode) graphs: dynamo falls back to eager after 8 recompilations by default
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.7
        setattr(config, name, max(getattr(config, name), 64))
        denoiser.compile(**options)
        denoiser._preciseinv_compiled = True
    return denoiser
