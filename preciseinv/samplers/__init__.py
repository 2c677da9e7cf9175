"""Sampler math in pure torch: the schedule (timesteps, alpha-bar) and each sampler's step mu and inversion step."""

from preciseinv.samplers.ddim import DDIMSampler
from preciseinv.samplers.schedule import Schedule, build_schedule

__all__ = ["DDIMSampler", "Schedule", "build_schedule"]
