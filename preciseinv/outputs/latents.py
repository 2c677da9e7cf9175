"""Latent files: ``latents/<id>.safetensors`` hold x*_T and everything needed to reproduce the reconstruction.

Tensors: ``latent`` (C, h, w) fp32.  Metadata (safetensors string map): ``format`` = "preciseinv-latent/1" and
``preciseinv`` = JSON of the engine's metadata (model, scheduler config, timesteps, sampler, method, eta, ...)
plus the sample's ``id``, ``source`` and ``prompt``.
"""

from __future__ import annotations

import json
import os

import torch

from preciseinv.errors import PreciseInvError
from preciseinv.outputs.atomic import atomic_write

FORMAT = "preciseinv-latent/1"


def save_latent(path: str | os.PathLike, latent: torch.Tensor, meta: dict,
                extra: dict[str, torch.Tensor] | None = None) -> None:
    from safetensors.torch import save_file

    tensors = {"latent": latent.detach().float().cpu().contiguous()}
    tensors.update({k: v.detach().float().cpu().contiguous() for k, v in (extra or {}).items()})
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "preciseinv": json.dumps(meta)})


def load_latent(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a latent file."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise PreciseInvError(f"latent file {str(path)!r} does not exist")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        if header.get("format") != FORMAT:
            raise PreciseInvError(f"{str(path)!r} is not a preciseinv latent file (format {header.get('format')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, json.loads(header["preciseinv"])
