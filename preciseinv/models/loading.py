"""Find a model (hub id, local diffusers directory, or the embedded mini model) and build its adapter.

The pipeline class in ``model_index.json`` picks the adapter. Weights load from safetensors only unless the user
opts out; remote code is never run.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from preciseinv.errors import PreciseInvError

EMBEDDED_MODEL = Path(__file__).resolve().parent.parent / "assets" / "mini-ddpm"

_ADAPTERS = {
    "DDPMPipeline": "preciseinv.models.pixel:PixelModel",
    "DDIMPipeline": "preciseinv.models.pixel:PixelModel",
    "StableDiffusionPipeline": "preciseinv.models.stable_diffusion:StableDiffusionModel",
    "LatentConsistencyModelPipeline": "preciseinv.models.stable_diffusion:StableDiffusionModel",
    "StableDiffusionXLPipeline": "preciseinv.models.stable_diffusion:StableDiffusionXLModel",
    "StableDiffusion3Pipeline": "preciseinv.models.sd3:StableDiffusion3Model",
    "FluxPipeline": "preciseinv.models.flux:FluxModel",
}
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@dataclass
class ModelSpec:
    """What ``configs/model/*.yaml`` describes: where the model is and its inversion defaults."""

    name: str = "mini"
    path: str | None = None  # hub id or local directory; None: the embedded mini model
    lr: float = 0.1  # AdamW learning rate for eps* (paper: 0.1 SD1.4, 0.05 LCM/SDXL, 0.025 SD3)
    num_steps: int = 2  # T
    dtype: str = "float32"  # weights' dtype; compute precision is trainer.precision (autocast)
    revision: str | None = None
    use_safetensors: bool = True
    guidance_embedding: float | None = None  # the embedded guidance scale: LCM UNets' w + 1 (default 8.5), FLUX
    # [dev]'s guidance input (default 3.5); None: the family's default
    lora: str | None = None  # LoRA weights (hub id or directory) fused into the denoiser, e.g. LCM-LoRA
    lora_scale: float = 1.0
    sampler: str | None = None  # the preset's sampler (e.g. lcm for LCM-LoRA); null: the model's own
    precision: str = "32-true"  # the compute precision the preset recommends on a GPU
    compile: bool | str = False  # torch.compile the denoiser (True or a mode name); see preciseinv.accel
    compile_scope: str = "full"  # what compile compiles: the whole denoiser, or its blocks ("regional")
    channels_last: bool = False  # NHWC weights for a convolutional denoiser
    cudnn_benchmark: bool = False  # cuDNN times its convolution algorithms per shape (process-wide)

    def load(self, device: str | torch.device = "cpu"):
        model = load_model(self.path, device=device, dtype=self.dtype, revision=self.revision,
                           use_safetensors=self.use_safetensors, lora=self.lora, lora_scale=self.lora_scale)
        if self.guidance_embedding is not None:
            model.guidance_embedding = self.guidance_embedding
        from preciseinv.accel.settings import accelerate

        return accelerate(model, self.compile, self.channels_last, self.compile_scope, self.cudnn_benchmark)


def resolve_device(device: str | torch.device | None = None) -> str:
    """The device to load on: ``None`` is cuda where there is one, else cpu; a name torch does not know, or cuda
    on a machine without one, is one line saying what to use."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError, TypeError):
        raise PreciseInvError(f"device={device} is not a device: use cpu or cuda (cuda:1: the second GPU)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build of torch" if torch.version.cuda is None else "no GPU visible"
        raise PreciseInvError(f"device={device}, but this machine has {build}: use device=cpu")
    return str(device)


def _resolve(path: str | os.PathLike | None) -> tuple[str, bool]:
    """(where to load from, whether it is local)."""
    if path is None or str(path) in ("", "embedded", "mini") or str(path).startswith("embedded:"):
        return str(EMBEDDED_MODEL), True
    path = os.path.expanduser(str(path))
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "model_index.json")):
            raise PreciseInvError(f"model.path {path!r} has no model_index.json: point it at a diffusers-format "
                                  "directory (one saved with pipeline.save_pretrained)")
        return path, True
    looks_local = path.startswith(("/", ".", "~")) or path.count("/") != 1 or os.path.exists(path)
    if looks_local:
        raise PreciseInvError(f"model.path {path!r} does not exist: give an existing diffusers directory "
                              "or a hub id such as stable-diffusion-v1-5/stable-diffusion-v1-5")
    return path, False


@functools.lru_cache(maxsize=1)
def hub_unreachable() -> str | None:
    """The hub's host when a direct connection to it fails within seconds (no network, no DNS), else None; None as
    well when the hub is off by choice (``HF_HUB_OFFLINE=1``) or reached through a proxy, which this does not probe.
    Probed once per process."""
    import socket
    from urllib.parse import urlparse
    from urllib.request import getproxies

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    if constants.HF_HUB_OFFLINE or getproxies().get(url.scheme) or getproxies().get("all"):
        return None
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=5).close()
        return None
    except OSError:
        return url.hostname


def hub_out_of_reach() -> str | None:
    """Why hub ids must come from the local cache alone (the hub off by choice, or its host not reachable), or
    None when the hub is there to ask."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "the hub is off (HF_HUB_OFFLINE=1)"
    host = hub_unreachable()
    return f"{host} cannot be reached" if host else None


def cache_only(path: str, revision: str | None = None) -> bool:
    """Whether hub model ``path`` must load from the local cache alone: the hub is off (``HF_HUB_OFFLINE=1``) or
    cannot be reached and the model is cached (one notice). Unreachable and not cached: one line with both ways out,
    in seconds rather than after a minute of the hub client's retries."""
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE:
        return True
    host = hub_unreachable()
    if host is None:
        return False
    if isinstance(try_to_load_from_cache(path, "model_index.json", revision=revision), str):
        if path not in _NOTICED:
            _NOTICED.add(path)
            print(f"preciseinv: {host} cannot be reached: loading {path!r} from the local cache", file=sys.stderr)
        return True
    raise PreciseInvError(f"{host} cannot be reached to fetch {path!r}, which is not in the local cache: download "
                          "it where there is internet (then HF_HUB_OFFLINE=1 here), or give model.path=<a local "
                          "diffusers directory>")


_NOTICED: set[str] = set()


def _model_index(path: str, local: bool, revision: str | None) -> dict:
    if local:
        return json.loads(Path(path, "model_index.json").read_text())
    offline = cache_only(path, revision)
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(path, "model_index.json", revision=revision,
                                               local_files_only=offline)).read_text())
    except Exception as err:  # offline, unknown repo, gated repo: one message with the fix
        if offline:
            raise PreciseInvError(f"hub model {path!r} is not in the local cache and HF_HUB_OFFLINE=1 keeps the hub "
                                  "off: download it where there is internet, or give model.path=<a local diffusers "
                                  "directory>") from None
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise PreciseInvError(
            f"could not fetch hub model {path!r} ({type(err).__name__}: {reason}); check the id and your network "
            "(or HF_TOKEN for gated models), or download it elsewhere and pass model.path=<local directory>"
        ) from None


def model_configs(path: str | os.PathLike | None, revision: str | None = None):
    """(model_index.json, config(subfolder, name="config.json") -> that JSON) of a model, without loading any
    weights."""
    where, local = _resolve(path)
    index = _model_index(where, local, revision)

    def config(sub: str, name: str = "config.json") -> dict:
        if local:
            return json.loads(Path(where, sub, name).read_text())
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(where, f"{sub}/{name}", revision=revision,
                                               local_files_only=cache_only(where, revision))).read_text())

    return index, config


def native_sampler(path: str | os.PathLike | None = None, revision: str | None = None) -> str:
    """The sampler the model runs when none is named (``DiffusionModel.default_sampler``), without loading any
    weights."""
    from preciseinv.models.base import sampler_for

    return sampler_for(model_configs(path, revision)[1]("scheduler", "scheduler_config.json"))


def text_conditioned(path: str | os.PathLike | None = None, revision: str | None = None) -> bool:
    """Whether the model takes a text prompt (its pipeline has a text encoder), without loading any weights."""
    index, _ = model_configs(path, revision)
    return "text_encoder" in index


def native_resolution(path: str | os.PathLike | None = None, revision: str | None = None) -> int:
    """The pixel resolution a model was trained at, read from its configs (no weights are loaded)."""
    index, config = model_configs(path, revision)
    denoiser = "transformer" if "transformer" in index else "unet"
    size = config(denoiser).get("sample_size", 128)  # FLUX's transformer has none: its pipeline's default, 128
    size = size[0] if isinstance(size, (list, tuple)) else size
    if "vae" in index:
        size *= 2 ** (len(config("vae")["block_out_channels"]) - 1)
    return int(size)


def size_multiple(path: str | os.PathLike | None = None, revision: str | None = None, strict: bool = False) -> int:
    """What image sides should be a multiple of: the VAE's factor times the denoiser's own (a UNet's downsampling,
    a transformer's patch size; FLUX's 2x2 packing). ``strict``: what they must be a multiple of (a text-conditioned
    UNet matches any latent size itself; a transformer's patches cannot, nor can a pixel DDPM's ``UNet2DModel`` take
    sides that are not a multiple of its downsampling). Read from the configs, no weights loaded."""
    index, config = model_configs(path, revision)
    vae = 2 ** (len(config("vae")["block_out_channels"]) - 1) if "vae" in index else 1
    if "transformer" in index:
        patch = 2 if "Flux" in index.get("_class_name", "") else int(config("transformer").get("patch_size", 1))
        return vae * patch
    unet = config("unet")
    matches_odd_sizes = unet.get("_class_name") != "UNet2DModel"  # UNet2DConditionModel forwards upsample sizes
    return vae if strict and matches_odd_sizes else vae * 2 ** (len(unet["block_out_channels"]) - 1)


def read_index(path: str, revision: str | None = None, local_files_only: bool = False) -> dict:
    """``model_index.json`` of a local directory or hub id."""
    return _model_index(path, os.path.isdir(path), revision)


def scheduler_config(path: str, **load_kwargs) -> dict:
    from diffusers import DDIMScheduler

    hub = {k: v for k, v in load_kwargs.items() if k in ("revision", "local_files_only")}
    return dict(DDIMScheduler.load_config(path, subfolder="scheduler", **hub))


def lora_from_cache(lora: str) -> str | None:
    """Where the hub is off or cannot be reached: the folder of hub LoRA ``lora``'s cached copy (its weights file
    found there by the loader, whatever its name), or one line when there is none (the hub client would retry for a
    minute, or ask for a ``weight_name``); None where the hub is reached (or ``lora`` is no hub id)."""
    from huggingface_hub import snapshot_download

    if not re.fullmatch(r"[\w.-]+/[\w.-]+", lora):  # not a hub id (a path that is not there): the loader says so
        return None
    why = hub_out_of_reach()
    if why is None:
        return None
    try:
        return snapshot_download(lora, local_files_only=True)  # its latest cached copy (model.revision is the model's)
    except Exception:  # not cached
        raise PreciseInvError(f"{why} and LoRA weights {lora!r} are not in the local cache: download them where there "
                              "is internet, or give model.lora=<a local folder or .safetensors file> (model.lora=null: "
                              "none)") from None


def fuse_lora(model, lora: str, scale: float = 1.0, revision: str | None = None) -> None:
    """Load LoRA weights (diffusers/peft format) into the model's denoiser and fuse them in."""
    import importlib.util

    if importlib.util.find_spec("peft") is None:
        raise PreciseInvError("model.lora needs the peft package: pip install peft")
    local = os.path.isdir(os.path.expanduser(lora))
    # a hub id with the hub out of reach: its cached copy's folder, or one line
    cached = None if local or os.path.isfile(os.path.expanduser(lora)) else lora_from_cache(lora)
    source = cached or (os.path.expanduser(lora) if local else lora)
    denoiser = model.modules[model.denoiser_name]
    try:
        denoiser.load_lora_adapter(source, prefix=model.denoiser_name, adapter_name="preciseinv",
                                   revision=None if cached else revision, local_files_only=local or bool(cached),
                                   use_safetensors=True)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise PreciseInvError(f"could not load LoRA weights {lora!r}: {first}") from None
    denoiser.fuse_lora(lora_scale=scale)
    denoiser.unload_lora()
    denoiser.requires_grad_(False).eval()
    model.lora = {"lora": lora, "lora_scale": scale}


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               dtype: str | torch.dtype = "float32", revision: str | None = None, use_safetensors: bool = True,
               lora: str | None = None, lora_scale: float = 1.0):
    """Load a diffusers model as a ``DiffusionModel`` adapter (frozen, eval mode), LoRA weights fused in."""
    import importlib

    where, local = _resolve(path)
    index = _model_index(where, local, revision)
    cls_name = index.get("_class_name", "?")
    if cls_name not in _ADAPTERS:
        raise PreciseInvError(f"unsupported pipeline class {cls_name!r} at {where!r}; supported: "
                              + ", ".join(sorted(_ADAPTERS)))
    module_name, attr = _ADAPTERS[cls_name].split(":")
    adapter_cls = getattr(importlib.import_module(module_name), attr)
    torch_dtype = _DTYPES[dtype] if isinstance(dtype, str) else dtype
    # use_safetensors=false allows .bin beside safetensors (None: each component takes whichever it has; a pipeline
    # saved with safe_serialization=False by recent transformers still holds a safetensors text encoder)
    kwargs = {"use_safetensors": True if use_safetensors else None, "torch_dtype": torch_dtype}
    if revision:
        kwargs["revision"] = revision
    if local or cache_only(where, revision):
        kwargs["local_files_only"] = True
    # what latent files record: a local directory by its absolute path (a file reconstructs from any folder)
    source = "embedded:mini-ddpm" if where == str(EMBEDDED_MODEL) else os.path.abspath(where) if local else str(path)
    try:
        model = adapter_cls.from_pretrained(where, source=source, **kwargs)
    except (OSError, EnvironmentError) as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        hint = " (set model.use_safetensors=false to allow .bin weights)" if use_safetensors and \
            "safetensors" in first.lower() else ""
        raise PreciseInvError(f"could not load {cls_name} from {where!r}: {first}{hint}") from None
    if lora:
        fuse_lora(model, lora, lora_scale, revision)
    return model.to(device)
