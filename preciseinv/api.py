"""The Python API for notebooks and scripts; it drives the same ``InversionEngine`` as ``python -m preciseinv.fit``.

    from preciseinv import Inverter
    inv = Inverter("mini", eta=1e-3)                 # a preset, a hub id or a local diffusers directory
    result = inv.invert(["photo.png"])               # paths, PIL images or a (B, 3, H, W) tensor in [-1, 1]
    recon = inv.reconstruct(result.latents)          # (B, 3, H, W) in [-1, 1]
    inv.save("latents/photo.safetensors", result, 0)
    image, meta = reconstruct_file("latents/photo.safetensors")
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from preciseinv.accel.settings import TRUE_HALF, autocast
from preciseinv.builder import build_engine, file_config, instantiate, inverter_config
from preciseinv.errors import PreciseInvError
from preciseinv.methods import InversionResult
from preciseinv.models.base import DiffusionModel
from preciseinv.models.loading import ModelSpec, resolve_device


# the config keys an error may name, and the Inverter argument each one is
_ARGUMENTS = (("method.max_iters", "max_iters"), ("method.retry_iters", "retry_iters"), ("method.eta", "eta"),
              ("solver.lr", "lr"), ("model.path", "model"))


@contextlib.contextmanager
def _in_api_terms():
    """A PreciseInvError raised inside, its text with the command line's keys (``method.eta``, ``model.path=DIR``)
    as ``Inverter``'s arguments (``eta``, ``model=DIR``)."""
    try:
        yield
    except PreciseInvError as err:
        text = str(err)
        for key, name in _ARGUMENTS:
            text = re.sub(rf"(?<![\w.]){re.escape(key)}(?!\w)", name, text)
        raise PreciseInvError(text) from None


def _numbers(**values) -> dict:
    """Inverter's numeric arguments as Python numbers (a numpy or one-element torch scalar too; None keeps the
    config's value): a string or another type is one line naming the argument."""
    import numbers

    out = {}
    for name, value in values.items():
        whole = name in ("max_iters", "retry_iters")
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, numbers.Integral if whole else numbers.Real)):
            raise PreciseInvError(f"{name} must be {'a whole number' if whole else 'a number'}, got {value!r}")
        out[name] = None if value is None else int(value) if whole else float(value)
    return out


@dataclass
class Inversion:
    latents: torch.Tensor  # (B, C, h, w) x*_T
    x0: torch.Tensor  # (B, C, h, w) the encoded images
    images: torch.Tensor  # (B, 3, H, W) the preprocessed inputs in [-1, 1]
    result: InversionResult
    prompts: list[str] = field(default_factory=list)  # (B,) the prompts it was inverted with ("" for none)


class Inverter:
    """Invert images into a diffusion model's x*_T and regenerate them from it.

    ``solver``: ``"hybrid"`` (default), ``"adamw"`` (the paper's recipe, at ``lr``, default the preset's),
    ``"fixed_point"``, ``"anderson"``, ``"adam"``, ``"lbfgs"``, ``"newton"``, or a ``functools.partial`` of an update
    rule.
    ``encoder``: ``"mean"`` (the VAE posterior mean) or ``"decoder_inversion"`` (x0 = the latent the decoder maps
    closest to the image; latent models only).
    ``init``: where each step's solver starts: ``"ddim"`` (the paper's DDIM-inversion step), the folder
    ``python -m preciseinv.learn_init`` wrote (a learned start, kept per sample where it is the better one), or a
    start object (``preciseinv.inits.DDIMStart()``, ``LearnedStart(folder)``).
    ``retry``: None, or a second solver for what the first leaves above ``eta``: ``"spectral"``, ``"adamw"`` or a
    ``functools.partial`` of an update rule; it solves those samples again from their start, for up to
    ``retry_iters`` iterations per step (default ``max_iters``), and each keeps the solution that regenerates it better.
    """

    def __init__(self, model: DiffusionModel | ModelSpec | str | os.PathLike | None = None, method="preciseinv",
                 num_steps: int | None = None, eta: float = 1e-3, max_iters: int = 200, solver="hybrid",
                 lr: float | None = None,
                 timestep_spacing: str | None = None, guidance_scale: float = 1.0, device: str | None = None,
                 precision: str = "32", lpips: bool = False, sampler: str | None = None, encoder="mean",
                 timesteps: list | None = None, init="ddim", retry=None, retry_iters: int | None = None):
        given = _numbers(eta=eta, max_iters=max_iters, lr=lr, guidance_scale=guidance_scale, retry_iters=retry_iters)
        eta, max_iters, lr, guidance_scale, retry_iters = (given[k] for k in ("eta", "max_iters", "lr",
                                                                              "guidance_scale", "retry_iters"))
        if retry is not None and not isinstance(retry, str) and not callable(retry):
            raise PreciseInvError(f"retry must be a solver's name (spectral, adamw) or an update rule's "
                                  f"functools.partial, got {retry!r}")
        with _in_api_terms():
            # sugar over the command line's config tree (configs/), built by preciseinv.builder as fit builds it
            loaded = model if isinstance(model, DiffusionModel) else None
            cfg = inverter_config(model, method, solver, encoder, num_steps=num_steps, eta=eta, max_iters=max_iters,
                                  lr=lr, timestep_spacing=timestep_spacing, guidance_scale=guidance_scale,
                                  precision=precision, lpips=lpips, sampler=sampler, timesteps=timesteps, init=init,
                                  retry=retry, retry_iters=retry_iters)
            if loaded is not None and str(precision) in TRUE_HALF:
                raise PreciseInvError(f"precision={precision} loads the weights in half: pass a preset, a path or "
                                      "a ModelSpec (a loaded model keeps its own dtype; run it with precision='32')")
            parts = {}
            # an update rule's partial, a start object: built into the configured method
            given = {key: value for key, value in (("solver", solver), ("init", init), ("retry", retry))
                     if value is not None and not isinstance(value, (str, os.PathLike)) and key in cfg.method}
            if "retry" in given and retry_iters is not None:  # a retry object's cap (a named one's is in the config)
                given["retry_iters"] = retry_iters
            if not isinstance(method, str):  # a configured method object (PreciseInv, DDIMInversion)
                parts["method"] = method
            elif given:
                parts["method"] = instantiate(cfg.method, **given)
            if not isinstance(encoder, str):
                parts["encoder"] = encoder
            self._build(cfg, device, loaded, parts)

    @classmethod
    def from_config(cls, cfg, device: str | None = None) -> "Inverter":
        """The Inverter of a composed, prepared config tree (``preciseinv.builder.prepare``): what
        ``python -m preciseinv.interpolate`` builds from its command line."""
        inverter = cls.__new__(cls)
        inverter._build(cfg, device, None, {})
        return inverter

    def _build(self, cfg, device: str | None, loaded: DiffusionModel | None, parts: dict) -> None:
        from omegaconf import OmegaConf

        device = resolve_device(device)
        self._spec = None if loaded is not None else instantiate(cfg.model)
        self.model = loaded if loaded is not None else self._spec.load(device)
        self._multiple = None
        self.engine = build_engine(cfg, self.model, **parts)
        self.precision = OmegaConf.select(cfg, "trainer.precision", default="32-true")

    def load_images(self, images) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] at the model's resolution from a path or PIL image, a list of them, or a tensor
        ((B, 3, H, W) or (3, H, W) in [-1, 1]). What cannot be used is one line."""
        from PIL import Image

        from preciseinv.datamodules.base import error_text
        from preciseinv.datamodules.images import fit_square, load_image, to_rgb, to_tensor

        if isinstance(images, torch.Tensor):
            return self._check_tensor(images)
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):  # one image
            images = [images]
        images = list(images)
        if not images:
            raise PreciseInvError("no images given")
        if all(isinstance(image, torch.Tensor) for image in images):  # a list of (3, H, W) tensors, each checked
            return torch.cat([self._check_tensor(image) for image in images])
        size, out = self.model.resolution, []
        for image in images:
            if isinstance(image, np.ndarray):  # (H, W, 3) or (H, W) uint8, as PIL takes them
                if image.dtype != np.uint8:
                    raise PreciseInvError(f"a numpy image must be uint8 (H, W, 3) or (H, W); got {image.dtype} "
                                          f"{image.shape} (float images: pass a (3, H, W) tensor in [-1, 1])")
                image = Image.fromarray(image)
            if isinstance(image, Image.Image):
                out.append(to_tensor(fit_square(to_rgb(image), size)))
                continue
            if not isinstance(image, (str, os.PathLike)):
                raise PreciseInvError(f"an image must be a path, a PIL image, a uint8 numpy array or a tensor; got "
                                      f"{type(image).__name__}")
            if not os.path.isfile(image):
                raise PreciseInvError(f"image {str(image)!r} is not a file")
            if not os.path.getsize(image):
                raise PreciseInvError(f"cannot read image {str(image)!r}: the file is empty (0 bytes)")
            try:
                out.append(load_image(image, size))
            except Exception as err:  # corrupt, truncated, not an image
                raise PreciseInvError(f"cannot read image {str(image)!r}: {error_text(err)}") from None
        return torch.stack(out)

    def _check_tensor(self, images: torch.Tensor) -> torch.Tensor:
        x = images[None] if images.dim() == 3 else images  # (B, 3, H, W)
        if x.dim() != 4 or x.shape[1] != 3:
            raise PreciseInvError(f"an image tensor must be (B, 3, H, W) or (3, H, W), RGB in [-1, 1]; got shape "
                                  f"{tuple(images.shape)}")
        if not torch.isfinite(x).all():
            raise PreciseInvError("an image tensor holds NaN or infinite values")
        low, high = float(x.min()), float(x.max())
        if low < -1.5 or high > 1.5:  # resampling overshoots [-1, 1] a little; 0-255 or far off is a mistake
            raise PreciseInvError(f"an image tensor must hold values in [-1, 1]; got {low:.3g} to {high:.3g} "
                                  "(images in [0, 1]: pass x * 2 - 1)")
        need = self._size_multiple()
        if any(side % need for side in x.shape[-2:]):
            raise PreciseInvError(f"image sides must be multiples of {need} for this model; got "
                                  f"{tuple(x.shape[-2:])} (paths and PIL images are resized to the model's size)")
        return x

    def _size_multiple(self) -> int:
        """What this model's image sides must be a multiple of, read once from its configs (1, no check, when it
        was handed over already loaded)."""
        if self._multiple is None:
            from preciseinv.models.loading import size_multiple

            self._multiple = 1 if self._spec is None else size_multiple(self._spec.path, self._spec.revision,
                                                                         strict=True)
        return self._multiple

    def invert(self, images, prompts: list[str] | None = None) -> Inversion:
        images = self.load_images(images).to(self.model.device)
        with autocast(self.model.device, self.precision):
            x0, result = self.engine.invert(images, prompts)
        given = [prompts] * len(images) if isinstance(prompts, str) else list(prompts or [""] * len(images))
        return Inversion(result.latent.detach(), x0, images, result, given)

    def reconstruct(self, latents: torch.Tensor, prompts: list[str] | None = None,
                    noises: list[torch.Tensor | None] | None = None,
                    companion: torch.Tensor | None = None) -> torch.Tensor:
        """``noises``: the inversion's step noises (``Inversion.result.noises``), needed by lcm and ddpm;
        ``companion``: the second state of method=edict / bdia / belm (``Inversion.result.companion``)."""
        one = latents.dim() == 3  # a single (C, h, w) latent, as an image may be one (3, H, W) tensor

        def batch(t):
            return t[None] if one and t is not None and t.dim() == 3 else t

        latents, companion = self._check_latents(batch(latents)), batch(companion)
        noises = None if noises is None else [batch(z) for z in noises]
        with autocast(self.model.device, self.precision):
            return self.engine.reconstruct(latents, prompts, noises, companion)

    def _check_latents(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) of this model's state, sides it can take; else one line."""
        channels = self.model.state_channels
        c = channels or "C"
        if x.dim() != 4 or (channels and x.shape[1] != channels):
            raise PreciseInvError(f"latents must be (B, {c}, h, w) or ({c}, h, w) for this model; got shape "
                                  f"{tuple(x.shape)}")
        need = max(1, self._size_multiple() // self.model.vae_scale)
        if any(side % need for side in x.shape[-2:]):
            raise PreciseInvError(f"latent sides must be multiples of {need} for this model; got "
                                  f"{tuple(x.shape[-2:])}")
        return x

    def edit(self, images, source_prompts: list[str], target_prompts: list[str], guidance_scale: float = 7.5):
        """Invert with the source prompts, regenerate with the target prompts (negative: the source prompts).

        Returns (inversion, edited images (B, 3, H, W) in [-1, 1])."""
        if self.model.family == "pixel":  # no text encoder: the target prompt would be ignored
            raise PreciseInvError(f"this model ({self.model.source}) takes no text prompt, so it cannot edit by "
                                  "prompt: use a text-conditioned model (sd15, sdxl, ... or a local diffusers folder)")
        inversion = self.invert(images, source_prompts)
        with autocast(self.model.device, self.precision):
            edited = self.engine.edit(inversion.latents, target_prompts, source_prompts, guidance_scale,
                                      inversion.result.noises, inversion.result.companion)
        return inversion, edited

    def interpolate(self, latent_a: torch.Tensor, latent_b: torch.Tensor, frames: int = 8, mode: str = "slerp",
                    prompt: str = "", noises_a: list | None = None, noises_b: list | None = None,
                    companion_a: torch.Tensor | None = None, companion_b: torch.Tensor | None = None) -> torch.Tensor:
        """Decode ``frames`` points on the slerp (or lerp) path between two x*_T: (frames, 3, H, W) in [-1, 1].

        With lcm/ddpm each step's noise map travels the same path between the two inversions' maps; with
        method=edict / bdia / belm (two coupled states) the companion state travels beside x*_T, so both ends are
        still exact reconstructions."""
        from preciseinv.interpolation import path

        if mode not in ("slerp", "lerp"):
            raise PreciseInvError(f"mode must be slerp or lerp, got {mode!r}")

        def one(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(1, *t.shape[-3:]).float()

        def along(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.cat(path(one(a), one(b), frames, mode))  # (frames, C, h, w)

        method = self.engine.method
        coupled = getattr(method, "coupled", False)
        if coupled and (companion_a is None or companion_b is None):
            raise PreciseInvError(f"method={method.name} interpolates two coupled states: give both ends' companion "
                                  "(Inversion.result.companion, or the latent file's `companion`)")
        noises = None
        if noises_a is not None and noises_b is not None:
            noises = [None if za is None else along(za, zb) for za, zb in zip(noises_a, noises_b)]
        companion = along(companion_a, companion_b) if coupled else None
        return self.reconstruct(along(latent_a, latent_b), [prompt] * frames, noises, companion)

    def metrics(self, recon: torch.Tensor, images: torch.Tensor) -> dict:
        """PSNR, SSIM (and LPIPS where on) of reconstructions against their images, both (B, 3, H, W) or one
        (3, H, W) each, in [-1, 1]: per image."""
        recon, images = (t[None] if t.dim() == 3 else t for t in (recon, images))
        if recon.shape != images.shape or recon.dim() != 4:
            raise PreciseInvError(f"metrics compare images of one shape, (B, 3, H, W) or (3, H, W); got "
                                  f"{tuple(recon.shape)} and {tuple(images.shape)}")
        return self.engine.metrics(recon, images.to(recon.device))

    def save(self, path: str | os.PathLike, inversion: Inversion, index: int, sample_id: str = "",
             source: str = "", prompt: str | None = None) -> None:
        """A latent file of image ``index``, enough to regenerate it (``reconstruct_file``); ``prompt``: by default
        the one it was inverted with."""
        from preciseinv.outputs import extra_tensors, save_latent

        if not -len(inversion.latents) <= index < len(inversion.latents):
            raise PreciseInvError(f"index {index} is outside this inversion of {len(inversion.latents)} image(s)")
        self.engine.use_latent_size(inversion.latents)  # the schedule of this inversion's size (FLUX, SD3.5)
        if prompt is None:
            prompt = inversion.prompts[index] if inversion.prompts else ""
        meta = {**self.engine.metadata(), "id": sample_id, "source": source, "prompt": prompt}
        save_latent(path, inversion.latents[index], meta, extra_tensors(inversion.result, index))


def reconstruct_file(path: str | os.PathLike, device: str | None = None,
                     model: DiffusionModel | None = None) -> tuple[torch.Tensor, dict]:
    """Regenerate the image of a latent file from the file alone: ((3, H, W) in [-1, 1], metadata). ``model``: the
    file's model already loaded (``python -m preciseinv.reconstruct`` loads it once for many files)."""
    from preciseinv.outputs import load_latent, stored_noises

    tensors, meta = load_latent(path)
    cfg = file_config(meta)
    device = resolve_device(device)
    engine = build_engine(cfg, model or instantiate(cfg.model).load(device))
    companion = tensors["companion"][None] if "companion" in tensors else None
    image = engine.reconstruct(tensors["latent"][None], [meta.get("prompt", "")],
                               stored_noises(tensors, meta["num_steps"]), companion)[0]
    return image, meta
