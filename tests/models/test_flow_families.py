"""FLUX.1 and SD3.5: our adapters and Euler sampler regenerate exactly what diffusers' pipelines generate from the
same noise (packing, rotary ids, conditioning, the guidance input, the resolution-dependent shift)."""

import pytest
import torch

from preciseinv.models import load_model
from preciseinv.models.flux import pack, unpack


def generate_ours(model, noise, size, steps=2, prompt="", guidance_scale=1.0, negative=None):
    sampler = model.sampler(steps, size=size)
    n = noise.shape[0]
    with torch.no_grad():
        cond = model.condition([prompt] * n, [negative] * n if negative is not None else None, guidance_scale)
        return sampler.sample(model.predict, noise, cond)


def test_pack_and_unpack_are_the_pipelines():
    from diffusers import FluxPipeline

    x = torch.randn(2, 4, 6, 10)
    tokens = pack(x)
    torch.testing.assert_close(tokens, FluxPipeline._pack_latents(x, 2, 4, 6, 10))
    torch.testing.assert_close(unpack(tokens, 6, 10), x)
    torch.testing.assert_close(FluxPipeline._unpack_latents(tokens, 12, 20, 2), x)  # pixel units, VAE factor 2


@pytest.mark.parametrize("fixture,embedded", [("tiny_flux", 3.5), ("tiny_flux_dev", 3.5), ("tiny_flux_dev", 5.0)])
@pytest.mark.parametrize("size", [(32, 48), (48, 32)])
def test_flux_generates_as_the_pipeline(fixture, embedded, size, request):
    from diffusers import FluxPipeline

    path = request.getfixturevalue(fixture)
    model, pipe = load_model(str(path)), FluxPipeline.from_pretrained(str(path))
    model.guidance_embedding = embedded  # [dev]'s guidance input ([schnell] has none)
    h, w = size[0] // model.vae_scale, size[1] // model.vae_scale
    torch.manual_seed(0)
    noise = torch.randn(1, 4, h, w)
    ours = generate_ours(model, noise, size)
    theirs = pipe(prompt="", height=size[0], width=size[1], num_inference_steps=2, guidance_scale=embedded,
                  latents=pack(noise), output_type="latent").images
    torch.testing.assert_close(pack(ours), theirs, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(ours, noise)


@pytest.mark.parametrize("fixture", ["tiny_flux", "tiny_flux_dev"])
def test_flux_edits_with_true_cfg_as_the_pipeline(fixture, request):
    """An edit: target prompt, source prompt as the negative, true CFG (a second pass), the embedded guidance kept;
    with target == source it is the reconstruction."""
    from diffusers import FluxPipeline

    path = request.getfixturevalue(fixture)
    model, pipe = load_model(str(path)), FluxPipeline.from_pretrained(str(path))
    torch.manual_seed(0)
    noise = torch.randn(1, 4, 16, 16)
    ours = generate_ours(model, noise, (32, 32), prompt="a cat", guidance_scale=4.0, negative="a dog")
    theirs = pipe(prompt="a cat", negative_prompt="a dog", true_cfg_scale=4.0, height=32, width=32,
                  num_inference_steps=2, guidance_scale=3.5, latents=pack(noise), output_type="latent").images
    torch.testing.assert_close(pack(ours), theirs, rtol=1e-4, atol=1e-4)
    same = generate_ours(model, noise, (32, 32), prompt="a cat", guidance_scale=4.0, negative="a cat")
    torch.testing.assert_close(same, generate_ours(model, noise, (32, 32), prompt="a cat"), rtol=1e-4, atol=1e-5)


def test_flux_sigmas_follow_the_image_size(tiny_flux):
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    model = load_model(str(tiny_flux))
    small, large = model.sampler(2, size=(32, 32)), model.sampler(2, size=(256, 512))
    assert float(large.schedule.sigmas[0]) > float(small.schedule.sigmas[0])  # more tokens: shifted to more noise
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(model.scheduler_config)
    scheduler.set_timesteps(sigmas=[1.0, 0.5], mu=calculate_shift(128 * 256 // 4, 256, 4096, 0.5, 1.15))
    torch.testing.assert_close(large.schedule.sigmas, scheduler.sigmas[:-1].double().flip(0))
    # and each Euler step is the scheduler's
    x, v = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    for k, t in enumerate(scheduler.timesteps.flip(0)):
        scheduler._step_index = None
        scheduler.set_begin_index(1 - k)
        torch.testing.assert_close(large.step(v, k, x), scheduler.step(v, t, x).prev_sample, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(32, 32), (32, 64)])
def test_sd35_generates_as_the_pipeline_with_its_dynamic_shift(tiny_sd35, size):
    from diffusers import StableDiffusion3Pipeline

    model, pipe = load_model(str(tiny_sd35)), StableDiffusion3Pipeline.from_pretrained(str(tiny_sd35))
    assert model.scheduler_config["use_dynamic_shifting"]
    torch.manual_seed(0)
    noise = torch.randn(1, 4, size[0] // model.vae_scale, size[1] // model.vae_scale)
    ours = generate_ours(model, noise, size)
    theirs = pipe(prompt="", height=size[0], width=size[1], num_inference_steps=2, guidance_scale=1.0, latents=noise,
                  output_type="latent").images
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
