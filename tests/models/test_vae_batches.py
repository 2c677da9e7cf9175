"""The VAE runs a few images at a time, whatever the solver's batch: the same latents and images, bounded memory."""

import torch

from preciseinv.models import load_model


def test_encode_and_decode_run_in_vae_batches(tiny_sd):
    model = load_model(str(tiny_sd))
    vae, calls = model.modules["vae"], []
    vae.decoder.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    torch.manual_seed(0)
    images = torch.rand(19, 3, 32, 32) * 2 - 1
    model.vae_batch = 8
    latents, recon = model.encode(images), model.decode(model.encode(images))
    assert calls == [8, 8, 3]  # the decoder never saw more than vae_batch images
    model.vae_batch = 64
    torch.testing.assert_close(model.encode(images), latents)  # one call: the same numbers
    torch.testing.assert_close(model.decode(latents), recon)
