"""``method=belm``: O-BELM (Wang et al., "BELM: Bidirectional Explicit Linear Multi-step Sampler for Exact Inversion
in Diffusion Models", NeurIPS 2024), exact by construction.

States x_0 (= x0), x_1, ..., x_T, with x_i = alpha_i x0 + sigma_i eps. In the scaled variables xs = x / alpha and
t = sigma / alpha the probability-flow ODE is d xs / dt = eps(x, t). BELM ties three consecutive states and the
network's estimate at the middle one by one linear relation; O-BELM's coefficients (the second-order ones of least
local truncation error) are

    xs_{i-1} = r_i^2 xs_{i+1} + (1 - r_i^2) xs_i - (1 + r_i) h_i eps(x_i, i),   h_i = t_i - t_{i-1}, r_i = h_i / h_{i+1}

With down_i and up_i the DDIM steps from x_i to the states i - 1 and i + 1 (both with the estimate at x_i; euler's
steps with the velocity held fixed are DDIM's in x = (1 - s) x0 + s eps) this is

    sampling:   x_{i-1} = down_i + g_i (x_{i+1} - up_i),   g_i = r_i^2 alpha_{i-1} / alpha_{i+1}
    inversion:  x_{i+1} = up_i + (x_{i-1} - down_i) / g_i

(BDIA is the same relation with a constant g). As in the official code, the first inversion step x_0 -> x_1 is a
plain DDIM-inversion step, and sampling's first step x_T -> x_{T-1} is plain DDIM, which exact reconstruction
replaces by the inversion's x_{T-1}, the latent file's ``companion``: sampling from (x_T, x_{T-1}) returns x0 to
float precision. One network call per step, no hyperparameter. The output state is the scheduler's final
alpha-bar, as for every sampler here (the official code lands on alpha-bar = 1). Needs a deterministic sampler
(ddim, euler) whose states all keep some signal; where it clips x0_hat, the DDIM steps run without that
clipping, so that the relation is the paper's (linear in the noise estimate), and the record says ``unclipped``.
"""

from __future__ import annotations

from typing import Any

import torch

from preciseinv.errors import PreciseInvError
from preciseinv.methods.base import InversionResult, estimate, exact_sampler, record_step
from preciseinv.samplers import Denoiser, Sampler


def coefficients(sampler) -> list[float]:
    """[g_1, ..., g_{T-1}] of the sampler's schedule, computed in float64."""
    alpha, sigma = sampler.levels()  # (T+1,) each, state 0 is the output
    t = sigma / alpha  # (T+1,) noise-to-signal ratio (inf where a state is pure noise)
    h = t.diff()  # (T,) h[i - 1] = t_i - t_{i-1}
    g = (h[:-1] / h[1:]) ** 2 * alpha[:-2] / alpha[2:]  # (T-1,)
    if not bool(((g > 0) & g.isfinite()).all()):
        raise PreciseInvError(f"method=belm cannot invert the timesteps {list(sampler.schedule.timesteps)}: two "
                              "states share a noise level or one is pure noise; give timesteps= strictly between "
                              "the clean output and pure noise")
    return g.tolist()


def ddim_steps(sampler, denoiser, x: torch.Tensor, i: int, cond) -> tuple[torch.Tensor, torch.Tensor]:
    """(down_i, up_i): the DDIM steps from the state x_i to the states i - 1 and i + 1 (one network call)."""
    e = estimate(sampler, denoiser, x, i - 1, cond)
    return sampler.step_from(e, i - 1, x), sampler.invert_from(e, i, x)


class BELM:
    name = "belm"
    exact = True  # the reconstruction is the input by construction (its residual says nothing)
    network_gradients = False  # never differentiates the network (data.batch_size=auto probes a forward only)
    reconstruction = "belm"
    coupled = True  # reconstructs from two states: x*_T and its companion
    min_steps = 2  # with one step the relation is a plain DDIM step

    def __init__(self, eta: float = 1e-3):
        self.eta = eta

    def describe(self) -> dict:
        return {"method": self.name, "eta": self.eta, "reconstruction": self.reconstruction}

    @torch.no_grad()
    def invert(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, cond: Any = None,
               hooks=None) -> InversionResult:
        sampler, unclipped = exact_sampler(sampler, self.name)
        T, g = sampler.num_steps, coefficients(sampler)
        x = [x0.detach().float()]  # x_0 .. x_T, (B, C, h, w) each
        result = InversionResult(latent=x[0], unclipped=unclipped)
        x.append(sampler.invert_step(denoiser, x[0], 0, cond))  # x_1: the plain DDIM-inversion step
        record_step(result, sampler, denoiser, x[1], x[0], x0, 0, cond, self.eta)
        for i in range(1, T):
            down, up = ddim_steps(sampler, denoiser, x[i], i, cond)
            x.append(up + (x[i - 1] - down) / g[i - 1])
            record_step(result, sampler, denoiser, x[i + 1], x[i], x0, i, cond, self.eta)
        steps = torch.full((x0.shape[0],), T, dtype=torch.long, device=x0.device)
        result.latent, result.companion = x[T], x[T - 1]
        result.nfe_forward, result.nfe_backward = steps, torch.zeros_like(steps)
        return result

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, sampler: Sampler, latent: torch.Tensor, cond=None, noises=None,
               companion=None) -> torch.Tensor:
        """O-BELM sampling from the pair (x_T, x_{T-1})."""
        sampler, _ = exact_sampler(sampler, self.name)
        T = sampler.num_steps
        if T == 1:
            return sampler.step_from(estimate(sampler, denoiser, latent.float(), 0, cond), 0, latent.float())
        if companion is None:
            raise PreciseInvError("method=belm reconstructs from two states: the companion state is missing (a latent "
                                  "file's `companion`; API: companion=inversion.result.companion)")
        g = coefficients(sampler)
        above, x = latent.float(), companion.float()  # x_{i+1}, x_i
        for i in range(T - 1, 0, -1):
            down, up = ddim_steps(sampler, denoiser, x, i, cond)
            above, x = x, down + g[i - 1] * (above - up)
        return x
