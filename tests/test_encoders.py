"""encoder=decoder_inversion: past the VAE round trip, never worse than the posterior mean, refused for pixels."""

import json

import pytest
import torch

from preciseinv.encoders import DecoderInversion, PosteriorMean
from preciseinv.errors import PreciseInvError
from preciseinv.models import load_model


def test_decoder_inversion_never_returns_a_worse_decoding_than_the_mean(tiny_sd):
    model = load_model(str(tiny_sd), device="cpu")
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    mean = PosteriorMean()(model, images)
    enc = DecoderInversion(max_iters=40)(model, images)
    assert mean.stats == {} and enc.x0.shape == mean.x0.shape
    assert (enc.stats["decoder_psnr"] >= enc.stats["roundtrip_psnr"]).all()
    assert (enc.stats["decoder_psnr"] > enc.stats["roundtrip_psnr"] + 0.5).all()  # and it does improve
    assert (enc.stats["decoder_cost"] == enc.stats["decoder_iters"] + 1 + 2 * enc.stats["decoder_iters"]).all()
    # a one-step budget cannot make it worse either: the loop keeps each image's best latent
    one = DecoderInversion(max_iters=1, lr=100.0)(model, images)
    assert (one.stats["decoder_psnr"] >= one.stats["roundtrip_psnr"] - 1e-4).all()


def test_pixel_models_refuse_with_the_fix():
    with pytest.raises(PreciseInvError, match="pixel space .* use encoder=mean"):
        DecoderInversion()(load_model(None, device="cpu"), torch.zeros(1, 3, 32, 32))


@pytest.mark.slow
def test_fit_with_decoder_inversion_beats_the_ceiling_and_resume_refuses_a_changed_encoder(tiny_sd, tmp_path,
                                                                                          fit_in_process):
    from preciseinv.testing.tiny import write_images

    write_images(tmp_path / "imgs", ["a.png", "b.png"], size=32)

    def fit(*args):
        return fit_in_process(f"model.path={tiny_sd}", "data=folder", f"data.root={tmp_path / 'imgs'}",
                              "data.num_workers=0", "~logger", *args)

    ceiling = fit("method=ceiling", f"output_dir={tmp_path / 'ceiling'}")
    summary = fit("encoder=decoder_inversion", "encoder.max_iters=100", f"output_dir={tmp_path / 'out'}")
    assert summary["decoder_psnr_mean"] > summary["roundtrip_psnr_mean"] and summary["decoder_cost_mean"] > 0
    assert summary["psnr_mean"] > ceiling["psnr_mean"] + 1.0  # the inversion's image beats the VAE round trip
    from safetensors import safe_open

    with safe_open(str(tmp_path / "out" / "latents" / "a.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["preciseinv"])["encoder"]["name"] == "decoder_inversion"
    with pytest.raises(PreciseInvError, match=r"other settings \(encoder=decoder_inversion there, mean now\)"):
        fit(f"output_dir={tmp_path / 'out'}")  # encoder=mean into the same folder
    with pytest.raises(PreciseInvError, match="pixel space"):
        fit("model.path=null", "encoder=decoder_inversion", f"output_dir={tmp_path / 'pixel'}")
    assert (tmp_path / "pixel" / "run.json").exists()  # refused as the model loaded, after run.json was written
    fit("model.path=null", "method=ddim", f"output_dir={tmp_path / 'pixel'}")  # it owns no sample: the folder is free
