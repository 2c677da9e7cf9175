"""EDICT, BDIA and BELM invert exactly: their own samplers return x0 to float precision, from the latent file too,
also where the sampler clips x0 (their updates then run unclipped, and the record says so); samplers that inject
noise are refused as the config is read."""

import json

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler

from preciseinv import Inverter, reconstruct_file
from preciseinv.builder import compose, prepare
from preciseinv.errors import PreciseInvError
from preciseinv.methods import BDIA, BELM, EDICT, DDIMInversion
from preciseinv.samplers import DDIMSampler, DDPMSampler, EulerFlowSampler, build_flow_schedule, build_noise_schedule
from preciseinv.samplers import build_schedule

SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)


def denoiser(x, t, cond):  # nonlinear, so DDIM inversion is visibly inexact
    return 0.6 * torch.tanh(2 * x) + 0.1 * x.roll(1, dims=-1)


def samplers():
    yield DDIMSampler(build_schedule(DDIMScheduler(**SD).config, 3))
    yield DDIMSampler(build_schedule(DDIMScheduler(**SD).config, 2), "v_prediction")
    yield EulerFlowSampler(build_flow_schedule(FlowMatchEulerDiscreteScheduler(shift=3.0).config, 3))


@pytest.mark.parametrize("method", [EDICT(), BDIA(), BDIA(gamma=1.0)], ids=["edict", "bdia", "bdia-1"])
@pytest.mark.parametrize("sampler", list(samplers()), ids=["ddim", "ddim-v", "euler"])
def test_reconstruction_is_exact(method, sampler):
    torch.manual_seed(0)
    x0 = torch.randn(2, 4, 8, 8, dtype=torch.float64).float()
    result = method.invert(denoiser, sampler, x0)
    recon = method.sample(denoiser, sampler, result.latent, None, None, result.companion)
    torch.testing.assert_close(recon, x0, rtol=0, atol=1e-4)  # float32 round-off only
    ddim = DDIMInversion().invert(denoiser, sampler, x0)
    assert (sampler.sample(denoiser, ddim.latent) - x0).abs().max() > 1e-2  # where DDIM inversion is not exact
    per_call = 2 if method.name == "edict" else 1
    assert result.nfe_forward.tolist() == [per_call * sampler.num_steps] * 2


def test_noise_injecting_samplers_are_refused():
    sampler = DDPMSampler(build_noise_schedule("ddpm", DDPMScheduler(**SD).config, 2))
    for method in (EDICT(), BDIA(), BELM()):
        with pytest.raises(PreciseInvError, match=f"method={method.name} needs a deterministic sampler \\(ddim or "
                                                  "euler\\): sampler=ddpm injects noise"):
            method.invert(denoiser, sampler, torch.zeros(1, 4, 8, 8))


@pytest.mark.parametrize("name", ["edict", "bdia", "belm"])
@pytest.mark.parametrize("sampler", ["ddpm", "lcm"])
def test_noise_injecting_samplers_are_refused_as_the_config_is_read(name, sampler):
    cfg = compose("fit", [f"method={name}", f"sampler={sampler}", "output_dir=."])
    with pytest.raises(PreciseInvError, match=f"method={name} needs a deterministic sampler .* sampler={sampler}"):
        prepare(cfg)
    prepare(compose("fit", [f"method={name}", "sampler=ddim", "output_dir=."]))
    prepare(compose("fit", [f"sampler={sampler}", "output_dir=."]))  # the other methods handle the noise


def test_settings_a_coupled_relation_cannot_invert_are_refused_as_the_config_is_read():
    for name in ("bdia", "belm"):
        with pytest.raises(PreciseInvError, match=f"method={name} needs num_steps >= 2"):
            prepare(compose("fit", [f"method={name}", "num_steps=1", "output_dir=."]))
    prepare(compose("fit", ["method=edict", "num_steps=1", "output_dir=."]))  # EDICT's mixing is exact at T = 1
    with pytest.raises(PreciseInvError, match="method=belm cannot invert the pure-noise top of a flow schedule"):
        prepare(compose("fit", ["method=belm", "model=sd3", "output_dir=."]))
    prepare(compose("fit", ["method=belm", "model=sd3", "timesteps=[100,500]", "output_dir=."]))


@pytest.mark.parametrize("name", ["edict", "bdia", "belm"])
def test_latent_files_carry_the_companion_and_reconstruct_exactly(name, tmp_path):
    inv = Inverter("mini", method=name, device="cpu")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    res = inv.invert(images)
    recon = inv.reconstruct(res.latents, companion=res.result.companion)
    torch.testing.assert_close(recon, images, rtol=0, atol=1e-3)
    inv.save(tmp_path / "a.safetensors", res, 1, sample_id="a")
    image, meta = reconstruct_file(tmp_path / "a.safetensors", device="cpu")
    assert meta["method"] == name and meta["reconstruction"] == name
    torch.testing.assert_close(image, images[1], rtol=0, atol=1e-3)
    with pytest.raises(PreciseInvError, match="companion"):
        inv.reconstruct(res.latents)


@pytest.fixture(scope="module")
def clipping_pixel_model(tmp_path_factory):
    """A tiny pixel DDPM whose scheduler clips x0_hat to [-1, 1] (clip_sample=True, as google's pixel DDPMs)."""
    from preciseinv.testing.tiny import save_tiny_pixel

    return save_tiny_pixel(tmp_path_factory.mktemp("models"), clip_sample=True)


@pytest.mark.parametrize("name", ["edict", "bdia", "belm"])
def test_a_clipping_sampler_runs_unclipped_and_says_so(name, clipping_pixel_model):
    inv = Inverter(clipping_pixel_model, method=name, num_steps=3, device="cpu")
    engine = inv.engine
    assert engine.sampler.clip_sample == 1.0
    torch.manual_seed(0)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    res = inv.invert(images)
    cond = engine.condition(None, 2)
    x0_hat = engine.method.sample(engine.model.predict, engine.sampler, res.latents, cond, None, res.result.companion)
    torch.testing.assert_close(x0_hat, res.x0, rtol=0, atol=1e-4)  # measured: at most 3.6e-7
    torch.testing.assert_close(inv.reconstruct(res.latents, companion=res.result.companion), images, rtol=0, atol=1e-4)
    assert [row["unclipped"] for row in res.result.per_sample()] == [True, True]
    # the clipping is not idle here: the sampler's own step from x*_T clips x0_hat
    x_T, top = res.latents, engine.sampler.num_steps - 1
    out = engine.model.predict(x_T, engine.sampler.schedule.timesteps[top], cond)
    assert (engine.sampler.step(out, top, x_T) - engine.sampler.unclipped().step(out, top, x_T)).abs().max() > 1e-2


def test_the_manifest_record_says_unclipped(clipping_pixel_model, tmp_path, fit_in_process):
    from preciseinv.datamodules.images import load_image
    from preciseinv.testing.tiny import write_images

    write_images(tmp_path / "imgs", ["a.png", "b.png"], size=16)
    out = tmp_path / "out"
    fit_in_process(f"model.path={clipping_pixel_model}", "method=belm", "data=folder", f"data.root={tmp_path / 'imgs'}",
                   "num_steps=3", f"output_dir={out}", "~logger", "lpips=false")
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["a", "b"]
    for record in records:
        assert record["unclipped"] is True and record["latent_mse"] < 1e-10
        image, meta = reconstruct_file(out / record["latent"], device="cpu")
        assert meta["unclipped"] is True and meta["reconstruction"] == "belm" and meta["sampler"] == "ddim"
        torch.testing.assert_close(image, load_image(record["source"], 16), rtol=0, atol=1e-4)
