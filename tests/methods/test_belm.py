"""BELM (O-BELM) inverts exactly: its update is the paper's relation, and its own sampler returns x0 to float
precision on tiny real pipelines (epsilon and v-prediction, T = 2 and 10) and on every deterministic sampler."""

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

from preciseinv import Inverter
from preciseinv.builder import compose, instantiate
from preciseinv.errors import PreciseInvError
from preciseinv.methods import BELM, DDIMInversion
from preciseinv.methods.belm import coefficients, ddim_steps
from preciseinv.samplers import DDIMSampler, EulerFlowSampler, build_flow_schedule, build_schedule

SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1, set_alpha_to_one=False)


def denoiser(x, t, cond):  # nonlinear, so DDIM inversion is visibly inexact
    return 0.6 * torch.tanh(2 * x) + 0.1 * x.roll(1, dims=-1)


def test_the_update_is_the_papers_relation():
    """x_{i-1} from (x_{i+1}, x_i, eps(x_i)) with O-BELM's coefficients, written from the scheduler's alpha-bar:
    in xs = x / alpha, t = sigma / alpha: xs_{i-1} = r^2 xs_{i+1} + (1 - r^2) xs_i - (1 + r) h_i eps."""
    scheduler, T = DDIMScheduler(**SD), 5
    sampler = DDIMSampler(build_schedule(scheduler.config, T))
    abar = torch.tensor([scheduler.final_alpha_cumprod.item()]
                        + [scheduler.alphas_cumprod[t].item() for t in sampler.schedule.timesteps], dtype=torch.float64)
    alpha, t = abar.sqrt(), ((1 - abar) / abar).sqrt()  # (T+1,) each
    g = coefficients(sampler)
    torch.manual_seed(0)
    above, x = torch.randn(2, 1, 4, 4, 4).unbind(0)  # x_{i+1}, x_i, (1, 4, 4, 4) each
    for i in range(1, T):
        h, h_next = t[i] - t[i - 1], t[i + 1] - t[i]
        r = h / h_next
        eps = denoiser(x, sampler.schedule.timesteps[i - 1], None).double()
        scaled = r**2 * above / alpha[i + 1] + (1 - r**2) * x / alpha[i] - (1 + r) * h * eps
        down, up = ddim_steps(sampler, denoiser, x, i, None)
        mine = down + g[i - 1] * (above - up)  # what BELM.sample runs
        torch.testing.assert_close(mine.double(), alpha[i - 1] * scaled, rtol=0, atol=1e-5)


def samplers():
    yield DDIMSampler(build_schedule(DDIMScheduler(**SD).config, 4))
    yield DDIMSampler(build_schedule(DDIMScheduler(**SD).config, 2), "v_prediction")
    yield DDIMSampler(build_schedule(DDIMScheduler(**SD, clip_sample=True).config, 3), clip_sample=1.0)
    # flow: the top state must keep some signal (sigma < 1), else BELM's step forgets x_T
    flow = FlowMatchEulerDiscreteScheduler(shift=3.0).config
    yield EulerFlowSampler(build_flow_schedule(flow, 3, timesteps=[300.0, 600.0, 950.0]))


@pytest.mark.parametrize("sampler", list(samplers()), ids=["ddim", "ddim-v", "ddim-clip", "euler"])
def test_reconstruction_is_exact_on_every_deterministic_sampler(sampler):
    torch.manual_seed(0)
    x0 = torch.randn(2, 4, 8, 8)
    method = BELM()
    result = method.invert(denoiser, sampler, x0)
    recon = method.sample(denoiser, sampler, result.latent, None, None, result.companion)
    torch.testing.assert_close(recon, x0, rtol=0, atol=1e-5)  # float32 round-off only
    ddim = DDIMInversion().invert(denoiser, sampler, x0)
    assert (sampler.sample(denoiser, ddim.latent) - x0).abs().max() > 1e-2  # where DDIM inversion is not exact
    assert result.nfe_forward.tolist() == [sampler.num_steps] * 2 and len(result.residual) == sampler.num_steps
    assert result.unclipped == (getattr(sampler, "clip_sample", None) is not None)


@pytest.mark.parametrize("num_steps", [2, 10])
@pytest.mark.parametrize("family", ["tiny_sd", "tiny_sd_v"])
def test_reconstruction_is_exact_on_tiny_pipelines(family, num_steps, request):
    inv = Inverter(request.getfixturevalue(family), method="belm", num_steps=num_steps, device="cpu")
    torch.manual_seed(0)
    res = inv.invert(torch.rand(2, 3, 32, 32) * 2 - 1)
    engine = inv.engine
    x0_hat = engine.method.sample(engine.model.predict, engine.sampler, res.latents, engine.condition(None, 2), None,
                                  res.result.companion)
    torch.testing.assert_close(x0_hat, res.x0, rtol=0, atol=1e-5)  # measured: at most 2.2e-6
    assert res.result.companion.shape == res.latents.shape and not torch.equal(res.result.companion, res.latents)
    assert [row["unclipped"] for row in res.result.per_sample()] == [False, False]
    with pytest.raises(PreciseInvError, match="companion"):
        inv.reconstruct(res.latents)


def test_a_pure_noise_top_state_is_refused():
    sampler = EulerFlowSampler(build_flow_schedule(FlowMatchEulerDiscreteScheduler(shift=3.0).config, 3))
    assert float(sampler.schedule.sigmas[-1]) == 1.0
    with pytest.raises(PreciseInvError, match="method=belm cannot invert the timesteps .* one is pure noise"):
        BELM().invert(denoiser, sampler, torch.zeros(1, 4, 8, 8))


def test_the_config_builds_through_the_builder():
    method = instantiate(compose("fit", ["method=belm", "output_dir=."]).method)
    assert type(method) is BELM and method.describe() == {"method": "belm", "eta": 1e-3, "reconstruction": "belm"}
    inv = Inverter("mini", method="belm", device="cpu")
    assert type(inv.engine.method) is BELM
    assert inv.engine.config["method"]["_target_"] == "preciseinv.methods.BELM"
    assert inv.engine.metadata()["reconstruction"] == "belm"
