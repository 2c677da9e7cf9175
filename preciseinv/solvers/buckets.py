"""Working-set sizes for shape-specialised networks: a few bucket sizes instead of every size.

As samples converge the working set shrinks. An eager network does not care, nor does inductor (it compiles a
dynamic batch dimension); CUDA graphs (``model.compile=reduce-overhead``) record one graph per input shape. At each
sync the loop therefore brings each part of the working set, the forward-only rows and the gradient rows, to a
bucket size, 2^k or 3 * 2^(k-1) (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, ...: a batch of 64 meets at most 12
sizes per part, the same for every batch and timestep). It fills them with frozen rows (samples that have just
finished: they ride along unchanged and their network work is counted as nobody's) and, where that is cheaper,
lets forward-only rows ride in the gradient part (their forward is the same; their gradient is dropped).

The cheapest such plan is taken when it costs at most 1.5 times the exact split (a backward counted as two
forwards; padding one part to its bucket alone costs under 1.5 times); otherwise, early in a solve while nothing
has finished, or when the batch itself is no bucket size (``data.batch_size=auto`` rounds down to one), the parts
keep their exact sizes: one more graph, never a wrong answer.
"""

from __future__ import annotations

import torch

from preciseinv.solvers.base import network_cost


def bucket(n: int) -> int:
    """The smallest bucket size >= n (n >= 1): 2^k or 3 * 2^(k-1)."""
    if n <= 2:
        return n
    power = 1 << (n - 1).bit_length()  # the smallest 2^k >= n
    return 3 * power // 4 if 3 * power // 4 >= n else power


def bucket_floor(n: int) -> int:
    """The largest bucket size <= n (n >= 1): a batch size a shrinking working set can be padded back to."""
    power = 1 << (n.bit_length() - 1)  # the largest 2^k <= n
    return 3 * power // 2 if 3 * power // 2 <= n and power >= 2 else power


def is_bucket(n: int) -> bool:
    return n >= 1 and bucket(n) == n


def plan(n_fwd: int, n_grad: int, n_spare: int, slack: float = 1.5) -> tuple[int, int] | None:
    """Bucket sizes (F, G) for the forward-only part and the gradient part, or None to keep exact sizes.

    The gradient part holds the n_grad rows that need a gradient, then, if it must, some of the n_fwd forward-only
    rows (their forward is the same with a graph; their gradient is dropped), then spare rows; the forward part the
    other forward-only rows, then spare rows. The cheapest plan (a backward costing two forwards) is taken if it
    costs at most ``slack`` times the exact split."""
    sizes = [0] + [n for n in range(1, n_fwd + n_grad + n_spare + 1) if is_bucket(n)]
    exact, best = network_cost(n_fwd + n_grad, n_grad), None
    for G in sizes:
        if G < n_grad or (G > 0) != (n_grad > 0):  # no gradient part (no backward at all) when nobody needs one
            continue
        for F in sizes:
            total = F + G
            if not n_fwd + n_grad <= total <= n_fwd + n_grad + n_spare or n_grad + max(0, n_fwd - F) > G:
                continue
            cost = network_cost(total, G)
            if best is None or cost < best[0]:
                best = (cost, F, G)
    return (best[1], best[2]) if best is not None and best[0] <= slack * exact else None


def pad_to_buckets(fwd: torch.Tensor, grad: torch.Tensor, spare: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (host tensors) of the forward-only part and the gradient part at bucket sizes (``plan``), or
    at their exact sizes when no plan is cheap enough. Each row appears once; spare (frozen) rows fill the rest."""
    sizes = plan(fwd.numel(), grad.numel(), spare.numel())
    if sizes is None:
        return fwd, grad
    F, G = sizes
    moved = max(0, fwd.numel() - F)  # forward-only rows that ride in the gradient part
    fwd, carried = fwd[: fwd.numel() - moved], fwd[fwd.numel() - moved:]
    pad_f = F - fwd.numel()
    return torch.cat([fwd, spare[:pad_f]]), torch.cat([grad, carried, spare[pad_f:pad_f + G - grad.numel() - moved]])
