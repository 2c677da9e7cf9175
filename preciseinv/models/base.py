"""The interface the engine sees: a frozen diffusion model as encode / decode / condition / predict."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from preciseinv.errors import PreciseInvError
from preciseinv.samplers import (SAMPLERS, DDIMSampler, DDPMSampler, EulerFlowSampler, LCMSampler,
                                 build_flow_schedule, build_noise_schedule, build_schedule)


def select(cond: Any, idx: torch.Tensor) -> Any:
    """The rows ``idx`` of a batched conditioning (None, a tensor, or a dict of them)."""
    if cond is None:
        return None
    if isinstance(cond, torch.Tensor):
        return cond[idx]
    return {k: select(v, idx) if isinstance(v, (torch.Tensor, dict)) else v for k, v in cond.items()}


def timesteps_like(timestep: float, x: torch.Tensor, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """A (B,) timestep tensor for the batch ``x``, filled on its device: a fill kernel, where a Python number
    handed to a diffusers network becomes a host-to-device copy (a stream synchronisation) on every call."""
    return torch.full((x.shape[0],), timestep, device=x.device, dtype=dtype)


def sampler_for(scheduler_config: dict) -> str:
    """The sampler that fits a model with this scheduler config: Euler for flow matching, LCM's for an LCM
    scheduler, DDIM otherwise."""
    name = scheduler_config.get("_class_name", "")
    return "euler" if "FlowMatch" in name else "lcm" if name == "LCMScheduler" else "ddim"


class DiffusionModel(ABC):
    """A frozen diffusers model. Subclasses set ``modules`` and implement the four abstract methods.

    Images are (B, 3, H, W) in [-1, 1]; ``x0`` is the clean state the sampler works in (VAE latents, or pixels).
    The networks are in eval mode with ``requires_grad`` off: gradients flow only to the inputs (eps*).
    """

    family = "base"
    denoiser_name = "unet"
    lora: dict | None = None  # {"lora": ..., "lora_scale": ...} when LoRA weights were fused in
    static_shapes = False  # the denoiser records CUDA graphs (model.compile): solvers pad the working set

    def __init__(self, source: str, modules: dict[str, torch.nn.Module], scheduler_config: dict,
                 resolution: int):
        self.source = source
        self.modules = modules
        self.scheduler_config = dict(scheduler_config)
        self.resolution = resolution
        for module in modules.values():
            module.eval().requires_grad_(False)

    # --- what a family implements -------------------------------------------------------------
    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> the clean state x0 the sampler works in."""

    @abstractmethod
    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 -> images (B, 3, H, W) in [-1, 1]."""

    @abstractmethod
    def condition(self, prompts: list[str], negative_prompts: list[str] | None = None,
                  guidance_scale: float = 1.0) -> Any:
        """Batched conditioning for ``predict`` (classifier-free guidance when ``guidance_scale`` > 1)."""

    @abstractmethod
    def predict(self, x: torch.Tensor, timestep: int, cond: Any) -> torch.Tensor:
        """The network's output at state ``x`` and ``timestep`` (the Denoiser the samplers call)."""

    # --- shared ---------------------------------------------------------------------------------
    @property
    def prediction_type(self) -> str:
        return self.scheduler_config.get("prediction_type", "epsilon")

    @property
    def device(self) -> torch.device:
        return next(iter(self.modules.values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.modules.values())).dtype

    def to(self, device=None, dtype: torch.dtype | None = None) -> "DiffusionModel":
        for module in self.modules.values():
            module.to(device) if dtype is None else module.to(device, dtype)
        return self

    vae_scale = 1  # pixels per state pixel (latent models: their VAE's factor)

    @property
    def state_channels(self) -> int | None:
        """C of the state (B, C, h, w) the sampler works in: the VAE's latent channels, else the denoiser's input's
        (None where its config does not say)."""
        vae = self.modules.get("vae")
        config = getattr(vae if vae is not None else self.modules.get(self.denoiser_name), "config", {})
        return config.get("latent_channels" if vae is not None else "in_channels")

    # --- flow-matching schedules shifted by image size (FLUX, SD3.5): the family's pipeline's rule ---------
    flow_max_shift = 1.15  # calculate_shift's max_shift where the scheduler config has none (SD3's pipeline: 1.16)

    def image_seq_len(self, size: tuple[int, int]) -> int | None:
        """How many image tokens the denoiser sees at pixel size (H, W) (flow models with dynamic shifting)."""
        return None

    def flow_sigmas(self, num_steps: int):
        """The sigmas the family's pipeline hands ``set_timesteps`` (None: the scheduler's own)."""
        return None

    def flow_shift_mu(self, size: tuple[int, int] | None) -> float | None:
        """mu of the resolution-dependent shift at pixel size (H, W), computed as the pipelines compute it."""
        if not self.scheduler_config.get("use_dynamic_shifting"):
            return None
        from diffusers import FlowMatchEulerDiscreteScheduler

        # the built scheduler's config, with its own defaults filled in, is what the pipelines read
        cfg = FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config).config
        seq = self.image_seq_len(size or (self.resolution, self.resolution))
        base_seq, max_seq = cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096)
        base_shift, max_shift = cfg.get("base_shift", 0.5), cfg.get("max_shift", self.flow_max_shift)
        slope = (max_shift - base_shift) / (max_seq - base_seq)
        return seq * slope + base_shift - slope * base_seq

    @property
    def default_sampler(self) -> str:
        return sampler_for(self.scheduler_config)

    def sampler(self, num_steps: int, timestep_spacing: str | None = None, timesteps: list | None = None,
                name: str | None = None, size: tuple[int, int] | None = None):
        """The sampler for ``num_steps`` steps; ``size`` (H, W) in pixels matters to flow models whose schedule
        shifts with the image size (default: the model's native square)."""
        name = name or self.default_sampler
        if name == "euler":
            if self.default_sampler != "euler":
                raise PreciseInvError(f"sampler=euler needs a flow-matching model; this one is {self.family}")
            mu = self.flow_shift_mu(size) if timesteps is None else None
            return EulerFlowSampler(build_flow_schedule(self.scheduler_config, num_steps, timesteps, mu=mu,
                                                        sigmas=self.flow_sigmas(num_steps)))
        if name not in SAMPLERS:
            raise PreciseInvError(f"unknown sampler {name!r}; available: {', '.join(SAMPLERS)}")
        if self.default_sampler == "euler":
            raise PreciseInvError("this flow-matching model needs sampler=euler")
        clip = self.scheduler_config.get("clip_sample_range", 1.0) if self.scheduler_config.get("clip_sample") else None
        if name in ("lcm", "ddpm"):
            config = {**self.scheduler_config, **({"timestep_spacing": timestep_spacing} if timestep_spacing else {})}
            schedule = build_noise_schedule(name, config, num_steps, timesteps)
            return (LCMSampler if name == "lcm" else DDPMSampler)(schedule, self.prediction_type, clip)
        schedule = build_schedule(self.scheduler_config, num_steps, timestep_spacing, timesteps)
        return DDIMSampler(schedule, self.prediction_type, clip)

    def describe(self) -> dict:
        info = {"source": self.source, "family": self.family, "resolution": self.resolution,
                "prediction_type": self.prediction_type, "dtype": str(self.dtype).replace("torch.", ""),
                **(self.lora or {})}
        if getattr(self, "guidance_embedding", None) is not None:
            info["guidance_embedding"] = self.guidance_embedding  # an input of LCM UNets and FLUX [dev]
        return info
