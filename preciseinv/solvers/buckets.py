"""Working-set sizes for compiled, shape-specialised networks: a few bucket sizes instead of every size.

As samples converge the working set shrinks. An eager network does not care; a compiled one (``model.compile``) or
CUDA graphs record one graph per input shape. The loop therefore pads each part of the working set (the
forward-only rows and the gradient rows) up to a bucket size with frozen rows: samples that have just finished,
which ride along unchanged and whose network work is not counted as theirs. Buckets are 2^k and 3 * 2^(k-1)
(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, ...): at most a third of a part is padding, and a batch of 64 meets at
most 12 sizes per part, the same ones for every batch and timestep.

When too few frozen rows are at hand (early in a solve, while both parts are large), a part keeps its exact size:
one more graph, never a wrong answer.
"""

from __future__ import annotations

import torch


def bucket(n: int) -> int:
    """The smallest bucket size >= n (n >= 1): 2^k or 3 * 2^(k-1)."""
    if n <= 2:
        return n
    power = 1 << (n - 1).bit_length()  # the smallest 2^k >= n
    return 3 * power // 4 if 3 * power // 4 >= n else power


def is_bucket(n: int) -> bool:
    return n >= 1 and bucket(n) == n


def pad_to_buckets(fwd: torch.Tensor, grad: torch.Tensor, spare: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (host tensors) of the forward-only part and the gradient part, each padded with rows of
    ``spare`` (frozen rows, used at most once) up to its bucket size where enough spare rows remain; the forward
    part is padded first (its padding costs no backward)."""
    parts, used = [], 0
    for part in (fwd, grad):
        need = bucket(part.numel()) - part.numel() if part.numel() else 0
        if need and used + need <= spare.numel():
            part = torch.cat([part, spare[used:used + need]])
            used += need
        parts.append(part)
    return parts[0], parts[1]
