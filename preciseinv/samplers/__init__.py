"""Sampler math in pure torch: the schedule (timesteps, alpha-bar) and each sampler's step mu and inversion step."""

from preciseinv.samplers.ddim import DDIMSampler
from preciseinv.samplers.euler import EulerFlowSampler, FlowSchedule, build_flow_schedule
from preciseinv.samplers.schedule import Schedule, build_schedule
from preciseinv.samplers.stochastic import DDPMSampler, LCMSampler, NoiseSchedule, build_noise_schedule

SAMPLERS = ("ddim", "ddpm", "lcm", "euler")

__all__ = ["DDIMSampler", "DDPMSampler", "LCMSampler", "NoiseSchedule", "build_noise_schedule", "EulerFlowSampler", "FlowSchedule", "SAMPLERS", "Sampler", "Schedule",
           "build_flow_schedule", "build_schedule"]


class Sampler:
    """What methods and the engine use (DDIMSampler and EulerFlowSampler both provide it):

    ``num_steps``, ``schedule`` (with ``timesteps`` and ``to_dict()``), ``step(model_output, k, x)``,
    ``denoise(denoiser, x, k, cond)`` (mu), ``invert_step(denoiser, x_prev, k, cond)``, ``state(x0, eps, k)``,
    ``noise(x0, x, k)`` (its inverse) and ``sample(denoiser, x_T, cond)``. Samplers with ``injects_noise``
    (lcm, ddpm) also take the injected noise: ``denoise(..., noise=z)``, ``sample(..., noises=[...])``.
    """
