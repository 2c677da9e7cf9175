"""Latent files: ``latents/<id>.safetensors`` hold x*_T and everything needed to reproduce the reconstruction.

Tensors: ``latent`` (C, h, w) fp32, ``noise_<k>`` (C, h, w) for the lcm/ddpm step noises, ``companion``
(C, h, w) for the coupled samplers of method=edict / bdia / belm, ``x0`` (C, h, w), the clean state the run
inverted from, and for method=preciseinv ``state_<k>`` (C, h, w), the intermediate solutions x*_k for
k = 1 .. T-1 (x*_T is ``latent``): with x0 they give every step's solution, what ``python -m preciseinv.learn_init``
learns from. Files written before ``x0`` and the states were kept still load.  Metadata (safetensors string map):
``format`` = "preciseinv-latent/1" and ``preciseinv`` = JSON of the engine's metadata (model, scheduler config,
timesteps, sampler, method, eta, ...) plus the sample's ``id``, ``source`` and ``prompt``.
"""

from __future__ import annotations

import json
import os

import torch

from preciseinv.errors import PreciseInvError
from preciseinv.outputs.atomic import atomic_write

FORMAT = "preciseinv-latent/1"


def noise_maps(noises: list[torch.Tensor | None], index: int) -> dict[str, torch.Tensor]:
    """The ``noise_<k>`` tensors of sample ``index`` from an inversion's per-step noises (None where none)."""
    return {f"noise_{k}": z[index] for k, z in enumerate(noises) if z is not None}


def extra_tensors(result, index: int) -> dict[str, torch.Tensor]:
    """What a latent file stores beside x*_T for sample ``index`` of an ``InversionResult``: the step noises
    (``noise_<k>``), for coupled samplers the ``companion`` state, ``x0`` and the intermediate states
    (``state_<k>``, x*_k for k = 1 .. T-1)."""
    extra = noise_maps(result.noises, index)
    if result.companion is not None:
        extra["companion"] = result.companion[index]
    if result.x0 is not None:
        extra["x0"] = result.x0[index]
    extra.update({f"state_{k}": state[index] for k, state in enumerate(result.states, start=1)})
    return extra


def stored_noises(tensors: dict[str, torch.Tensor], num_steps: int) -> list[torch.Tensor | None]:
    """The per-step noises (each (1, C, h, w), or None) of a loaded latent file, ready for reconstruction."""
    return [tensors[f"noise_{k}"][None] if f"noise_{k}" in tensors else None for k in range(num_steps)]


def latent_bytes(latent: torch.Tensor, meta: dict, extra: dict[str, torch.Tensor] | None = None) -> bytes:
    """A latent file's content: x*_T (and ``extra`` tensors) with the metadata header."""
    from safetensors.torch import save

    tensors = {k: v.detach().float().cpu().contiguous() for k, v in {"latent": latent, **(extra or {})}.items()}
    return save(tensors, metadata={"format": FORMAT, "preciseinv": json.dumps(meta)})


def save_latent(path: str | os.PathLike, latent: torch.Tensor, meta: dict,
                extra: dict[str, torch.Tensor] | None = None) -> None:
    with atomic_write(path) as tmp:
        tmp.write_bytes(latent_bytes(latent, meta, extra))


def load_latent(path: str | os.PathLike, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a latent file; ``tensors=False``: its metadata only (``{}`` for the tensors), read from
    the header."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise PreciseInvError(f"latent file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise PreciseInvError(f"{str(path)!r} is not a preciseinv latent file (format {header.get('format')!r})")
            loaded = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
        meta = json.loads(header["preciseinv"])
    except PreciseInvError:
        raise
    except Exception as err:  # not safetensors at all, truncated, or its metadata missing or torn
        raise PreciseInvError(f"{str(path)!r} is not a readable latent file ({type(err).__name__}: "
                              f"{str(err).strip()[:120]})") from None
    return loaded, meta
