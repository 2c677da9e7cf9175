"""Samplers that inject noise between steps, with that noise made part of the learned state so that the
reconstruction is deterministic.

- ``lcm``: the consistency step of diffusers' LCMScheduler, denoised = c_out x0_hat + c_skip x_t (boundary
  condition scalings), then x_prev = sqrt(a_prev) denoised + sqrt(1 - a_prev) z. The injected z of the step that
  lands on state k-1 is eps*_{k-1}, the noise of that state's own parameterisation, so each subproblem asks
  denoised(x*_t) = x0: the consistency function is inverted step by step.
- ``ddpm``: the ancestral step of diffusers' DDPMScheduler (fixed_small variance),
  x_prev = mean(x_t) + sigma_t z; eps*_t and z*_t are learned jointly (paper, appendix A.1), z initialised
  from eps*_{t-1}.

``noises[k]`` is the z used by the step from state k (None for k = 0, which injects none); a latent file stores
them beside x*_T, and ``sample`` replays them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from preciseinv.errors import PreciseInvError
from preciseinv.samplers.ddim import Denoiser, ddim_update, split_prediction


@dataclass(frozen=True)
class NoiseSchedule:
    timesteps: tuple[int, ...]  # (T,) ascending
    alphas: torch.Tensor  # (T,) alpha-bar at each step
    alphas_prev: torch.Tensor  # (T,) alpha-bar of the state each step lands on (index 0: the output)
    c_skip: torch.Tensor  # (T,) LCM boundary scalings (1 and 0 for DDPM: unused)
    c_out: torch.Tensor

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def to_dict(self) -> dict:
        return {"timesteps": list(self.timesteps), "alphas": self.alphas.tolist(),
                "alphas_prev": self.alphas_prev.tolist()}


def _scheduler(kind: str, config: dict, num_steps: int, timesteps):
    from diffusers import DDPMScheduler, LCMScheduler

    if num_steps < 1:
        raise PreciseInvError(f"num_steps must be at least 1, got {num_steps}; set num_steps=2 (the paper's T)")
    scheduler = (LCMScheduler if kind == "lcm" else DDPMScheduler).from_config(dict(config))
    if kind == "ddpm" and scheduler.config.variance_type not in ("fixed_small", "fixed_small_log"):
        raise PreciseInvError(f"sampler=ddpm supports fixed_small variance, not {scheduler.config.variance_type!r}")
    if timesteps is None:
        scheduler.set_timesteps(num_steps)
        timesteps = [int(t) for t in scheduler.timesteps]
    return scheduler, sorted(int(t) for t in timesteps)


def build_noise_schedule(kind: str, config: dict, num_steps: int, timesteps=None) -> NoiseSchedule:
    scheduler, ts = _scheduler(kind, config, num_steps, timesteps)
    ac = scheduler.alphas_cumprod.double()
    alphas = ac[ts]  # (T,)
    final = torch.tensor([1.0], dtype=torch.float64)  # DDPM's last step lands on x0; LCM's returns denoised
    alphas_prev = torch.cat([final, alphas[:-1]])
    if kind == "lcm":
        scalings = [scheduler.get_scalings_for_boundary_condition_discrete(t) for t in ts]
        c_skip = torch.tensor([float(s) for s, _ in scalings], dtype=torch.float64)
        c_out = torch.tensor([float(o) for _, o in scalings], dtype=torch.float64)
    else:
        c_skip, c_out = torch.zeros(len(ts), dtype=torch.float64), torch.ones(len(ts), dtype=torch.float64)
    return NoiseSchedule(tuple(ts), alphas, alphas_prev, c_skip, c_out)


class NoiseInjectingSampler:
    """Shared parts: the sqrt(a) x0 + sqrt(1 - a) eps parameterisation, the DDIM-inversion initialisation."""

    injects_noise = True
    learn_noise = False  # True: the subproblem learns z*_t jointly with eps*_t

    def __init__(self, schedule: NoiseSchedule, prediction_type: str = "epsilon", clip_sample: float | None = None):
        self.schedule, self.prediction_type, self.clip_sample = schedule, prediction_type, clip_sample

    @property
    def num_steps(self) -> int:
        return self.schedule.num_steps

    def _s(self, table: torch.Tensor, k: int, like: torch.Tensor) -> torch.Tensor:
        return table[k].to(device=like.device, dtype=torch.float32)

    def _x0_eps(self, out, x, a):
        x0, eps = split_prediction(out.float(), x.float(), a, self.prediction_type)
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        return x0, eps

    def state(self, x0, eps, k):
        return ddim_update(x0, eps, self._s(self.schedule.alphas, k, eps))

    def noise(self, x0, x, k):
        a = self._s(self.schedule.alphas, k, x)
        return (x.float() - a.sqrt() * x0.float()) / (1 - a).sqrt()

    def invert_step(self, denoiser: Denoiser, x_prev, k, cond=None):
        a_prev = self._s(self.schedule.alphas_prev, k, x_prev)
        x0, eps = self._x0_eps(denoiser(x_prev, self.schedule.timesteps[k], cond), x_prev, a_prev)
        return ddim_update(x0, eps, self._s(self.schedule.alphas, k, x_prev))

    def denoise(self, denoiser: Denoiser, x, k, cond=None, noise=None):
        return self.step(denoiser(x, self.schedule.timesteps[k], cond), k, x, noise)

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, x_T, cond=None, noises=None):
        x = x_T.float()
        for k in reversed(range(self.num_steps)):
            x = self.denoise(denoiser, x, k, cond, noises[k] if noises is not None and k > 0 else None)
        return x


class LCMSampler(NoiseInjectingSampler):
    name = "lcm"

    def step(self, model_output, k, sample, noise=None):
        a = self._s(self.schedule.alphas, k, sample)
        x0, _ = self._x0_eps(model_output, sample, a)
        denoised = self._s(self.schedule.c_out, k, sample) * x0 + self._s(self.schedule.c_skip, k, sample) * sample
        if k == 0:
            return denoised
        a_prev = self._s(self.schedule.alphas_prev, k, sample)
        return a_prev.sqrt() * denoised + (1 - a_prev).sqrt() * noise.float()


class DDPMSampler(NoiseInjectingSampler):
    name = "ddpm"
    learn_noise = True

    def step(self, model_output, k, sample, noise=None):
        a, a_prev = self._s(self.schedule.alphas, k, sample), self._s(self.schedule.alphas_prev, k, sample)
        x0, _ = self._x0_eps(model_output, sample, a)
        alpha_t, beta_t = a / a_prev, 1 - a / a_prev
        mean = (a_prev.sqrt() * beta_t / (1 - a)) * x0 + (alpha_t.sqrt() * (1 - a_prev) / (1 - a)) * sample.float()
        if k == 0:  # the step to t = 0 adds no noise
            return mean
        sigma = ((1 - a_prev) / (1 - a) * beta_t).clamp_min(1e-20).sqrt()
        return mean + sigma * noise.float()
