"""Sampler math in pure torch: the schedule (timesteps, alpha-bar) and each sampler's step mu and inversion step."""

from preciseinv.samplers.base import BaseSampler, Denoiser
from preciseinv.samplers.ddim import DDIMSampler
from preciseinv.samplers.euler import EulerFlowSampler, FlowSchedule, build_flow_schedule
from preciseinv.samplers.schedule import Schedule, build_schedule
from preciseinv.samplers.stochastic import DDPMSampler, LCMSampler, NoiseSchedule, build_noise_schedule

SAMPLERS = ("ddim", "ddpm", "lcm", "euler")
Sampler = BaseSampler  # the interface methods and the engine use

__all__ = ["BaseSampler", "Denoiser", "DDIMSampler", "DDPMSampler", "LCMSampler", "NoiseSchedule", "build_noise_schedule", "EulerFlowSampler", "FlowSchedule", "SAMPLERS", "Sampler", "Schedule",
           "build_flow_schedule", "build_schedule"]

