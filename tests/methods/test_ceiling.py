"""method=ceiling: the autoencoder round trip, exact for pixel models, honoured by latent files."""

import torch

from preciseinv import Inverter, reconstruct_file


def test_ceiling_is_exact_for_a_pixel_model():
    inv = Inverter("mini", method="ceiling", device="cpu")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    res = inv.invert(images)
    recon = inv.reconstruct(res.latents)
    torch.testing.assert_close(recon, images)
    rows = res.result.per_sample()
    assert all(r["cost"] == 0 and r["converged"] == [True, True] and r["phase"] == ["exact"] * 2 for r in rows)


def test_ceiling_of_a_latent_model_is_the_vae_round_trip(tiny_sd, tmp_path):
    inv = Inverter(str(tiny_sd), method="ceiling", device="cpu")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    res = inv.invert(images)
    model = inv.model
    with torch.no_grad():
        round_trip = model.decode(model.encode(images))
    torch.testing.assert_close(inv.reconstruct(res.latents), round_trip)
    inv.save(tmp_path / "a.safetensors", res, 0, sample_id="a")
    image, meta = reconstruct_file(tmp_path / "a.safetensors", device="cpu")
    assert meta["method"] == "ceiling" and meta["reconstruction"] == "decode"
    torch.testing.assert_close(image, round_trip[0])
