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
from preciseinv.samplers.ddim import DDIMSampler
from preciseinv.samplers.schedule import Schedule


@dataclass(frozen=True)
class NoiseSchedule(Schedule):
    c_skip: torch.Tensor  # (T,) LCM boundary-condition scalings (unused by DDPM)
    c_out: torch.Tensor


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


class NoiseInjectingSampler(DDIMSampler):
    """DDIM's parameterisation, inversion step and x0 prediction; subclasses replace the step."""

    injects_noise = True


class LCMSampler(NoiseInjectingSampler):
    name = "lcm"

    def frozen_slope(self, k: int) -> float:
        """sqrt(a_prev) (c_out / sqrt(a) + c_skip): the boundary-condition mix of x0_hat and x_t (a_prev = 1 at
        k = 0, where the step returns ``denoised`` itself)."""
        s = self.schedule
        return float(s.alphas_prev[k].sqrt() * (s.c_out[k] / s.alphas[k].sqrt() + s.c_skip[k]))

    def step(self, model_output, k, sample, noise=None):
        a = self._at(self.schedule.alphas, k, sample)
        x0, _ = self._x0_eps(model_output, sample, a)
        denoised = self._at(self.schedule.c_out, k, sample) * x0 + self._at(self.schedule.c_skip, k, sample) * sample
        if k == 0:
            return denoised
        a_prev = self._at(self.schedule.alphas_prev, k, sample)
        return a_prev.sqrt() * denoised + (1 - a_prev).sqrt() * noise.float()


class DDPMSampler(NoiseInjectingSampler):
    name = "ddpm"
    learn_noise = True

    # frozen_slope: the posterior mean with eps_hat fixed is (x_t - beta / sqrt(1 - a) eps_hat) / sqrt(alpha_t),
    # so its slope 1 / sqrt(alpha_t) = sqrt(a_prev / a) is DDIM's.

    def noise_gain(self, k: int) -> float:
        """sigma_t, the standard deviation of the step's injected noise (0 for the last step)."""
        if k == 0:
            return 0.0
        a, a_prev = self.schedule.alphas[k], self.schedule.alphas_prev[k]
        return float(((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp_min(1e-20).sqrt())

    def step(self, model_output, k, sample, noise=None):
        a, a_prev = self._at(self.schedule.alphas, k, sample), self._at(self.schedule.alphas_prev, k, sample)
        x0, _ = self._x0_eps(model_output, sample, a)
        alpha_t, beta_t = a / a_prev, 1 - a / a_prev
        mean = (a_prev.sqrt() * beta_t / (1 - a)) * x0 + (alpha_t.sqrt() * (1 - a_prev) / (1 - a)) * sample.float()
        if k == 0:  # the step to t = 0 adds no noise
            return mean
        return mean + self.gains(k)[2] * noise.float()
