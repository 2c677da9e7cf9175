import json

import pytest
import torch

from preciseinv.errors import PreciseInvError
from preciseinv.models import EMBEDDED_MODEL, load_model
from preciseinv.models.loading import native_resolution


def test_embedded_model_loads_frozen_in_eval_mode():
    model = load_model()
    assert model.family == "pixel" and model.resolution == 32 and model.source == "embedded:mini-ddpm"
    unet = model.modules["unet"]
    assert not unet.training and not any(p.requires_grad for p in unet.parameters())
    assert (EMBEDDED_MODEL / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert native_resolution(None) == 32


def test_tiny_stable_diffusion_adapter(tiny_sd):
    model = load_model(str(tiny_sd))
    assert model.family == "stable_diffusion" and model.resolution == native_resolution(str(tiny_sd)) == 32
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    x0 = model.encode(images)
    assert x0.shape == (2, 4, 16, 16)
    assert model.decode(x0).shape == (2, 3, 32, 32)
    cond = model.condition(["a cat", ""])
    out = model.predict(x0, 501, cond)
    assert out.shape == x0.shape
    guided = model.condition(["a cat", "a dog"], ["", ""], guidance_scale=3.0)
    g = model.predict(x0, 501, guided)
    u = model.predict(x0, 501, {"cond": guided["uncond"]})
    c = model.predict(x0, 501, {"cond": guided["cond"]})
    expected = u + 3.0 * (c - u)
    torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("path,match", [
    ("/no/such/dir", "does not exist"),
    ("./relative/missing", "does not exist"),
])
def test_missing_paths_are_clear_errors(path, match):
    with pytest.raises(PreciseInvError, match=match):
        load_model(path)


def test_hub_ids_without_the_hub_fail_at_once_naming_both_ways_out(monkeypatch):
    """HF_HUB_OFFLINE=1 and an id not in the cache; the hub unreachable (a closed local port) without it: one line
    each, in seconds, not after the hub client's retries."""
    from huggingface_hub import constants

    from preciseinv.models import loading

    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PreciseInvError, match="'nobody/nothing' is not in the local cache and HF_HUB_OFFLINE=1.*"
                                              "model.path="):
        load_model("nobody/nothing")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    loading.hub_unreachable.cache_clear()
    try:
        with pytest.raises(PreciseInvError, match="127.0.0.1 cannot be reached to fetch 'nobody/nothing', which is "
                                                  "not in the local cache.*HF_HUB_OFFLINE=1.*model.path="):
            load_model("nobody/nothing")
    finally:
        loading.hub_unreachable.cache_clear()


def test_a_cached_hub_model_loads_when_the_hub_cannot_be_reached(tiny_sd, tmp_path):
    """A model in the hub cache, the hub unreachable and HF_HUB_OFFLINE unset: one notice, then it loads."""
    import os
    import shutil
    import subprocess
    import sys

    repo = tmp_path / "cache" / "models--someone--tiny"
    shutil.copytree(tiny_sd, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE" and "proxy" not in k.lower()}
    env.update(HF_HUB_CACHE=str(tmp_path / "cache"), HF_ENDPOINT="http://127.0.0.1:9")
    proc = subprocess.run([sys.executable, "-c", "from preciseinv.models import load_model; "
                           "print(type(load_model('someone/tiny')).__name__)"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "StableDiffusionModel"
    assert "127.0.0.1 cannot be reached: loading 'someone/tiny' from the local cache" in proc.stderr


def test_directory_without_index_or_unsupported_class(tmp_path):
    with pytest.raises(PreciseInvError, match="no model_index.json"):
        load_model(str(tmp_path))
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "AudioLDMPipeline"}))
    with pytest.raises(PreciseInvError, match="unsupported pipeline class 'AudioLDMPipeline'"):
        load_model(str(tmp_path))


def test_safetensors_only_by_default(tmp_path):
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(str(EMBEDDED_MODEL))
    pipe.save_pretrained(tmp_path / "bin", safe_serialization=False)
    with pytest.raises(PreciseInvError, match="use_safetensors=false"):
        load_model(str(tmp_path / "bin"))
    assert load_model(str(tmp_path / "bin"), use_safetensors=False).family == "pixel"


def test_use_safetensors_false_loads_a_folder_of_both_formats(tiny_sd, tmp_path):
    """save_pretrained(safe_serialization=False) writes .bin for the UNet and VAE, but recent transformers still
    write the text encoder as safetensors: use_safetensors=false takes whichever each component has."""
    from diffusers import StableDiffusionPipeline

    StableDiffusionPipeline.from_pretrained(str(tiny_sd)).save_pretrained(tmp_path / "mixed", safe_serialization=False)
    assert list((tmp_path / "mixed" / "unet").glob("*.bin"))
    with pytest.raises(PreciseInvError, match="use_safetensors=false to allow .bin weights"):
        load_model(str(tmp_path / "mixed"))
    assert load_model(str(tmp_path / "mixed"), use_safetensors=False).family == "stable_diffusion"


def test_sampler_must_fit_the_model(tiny_sd3):
    flow, pixel = load_model(str(tiny_sd3)), load_model()
    assert flow.family == "sd3" and flow.sampler(2).name == "euler" and pixel.sampler(2).name == "ddim"
    with pytest.raises(PreciseInvError, match="needs sampler=euler"):
        flow.sampler(2, name="ddim")
    with pytest.raises(PreciseInvError, match="needs a flow-matching model"):
        pixel.sampler(2, name="euler")
    with pytest.raises(PreciseInvError, match="unknown sampler 'lms'"):
        pixel.sampler(2, name="lms")


def test_sdxl_keeps_its_vae_in_fp32_under_half_precision(tiny_sdxl):
    model = load_model(str(tiny_sdxl), dtype="bfloat16")
    assert model.vae_upcast and model.modules["vae"].dtype == torch.float32
    assert model.modules["unet"].dtype == torch.bfloat16
    x0 = model.encode(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert x0.dtype == torch.float32 and torch.isfinite(model.decode(x0)).all()


def test_lora_weights_are_fused_and_recorded(tiny_sd, tiny_lora):
    base, fused = load_model(str(tiny_sd)), load_model(str(tiny_sd), lora=str(tiny_lora))
    x, cond = torch.randn(1, 4, 16, 16), base.condition([""])
    assert not torch.allclose(base.predict(x, 501, cond), fused.predict(x, 501, cond))
    assert not any(p.requires_grad for p in fused.modules["unet"].parameters())
    assert fused.describe()["lora"] == str(tiny_lora)
    with pytest.raises(PreciseInvError, match="could not load LoRA weights"):
        load_model(str(tiny_sd), lora="/no/such/lora")


def test_a_hub_lora_that_is_not_cached_is_one_line_when_the_hub_is_off(tiny_sd, monkeypatch, tmp_path):
    """The LCM presets' LoRA with the hub off or out of reach: one line naming the way out, not a minute of retries,
    a traceback or the hub client's request for a weight_name."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(PreciseInvError, match=r"the hub is off \(HF_HUB_OFFLINE=1\) and LoRA weights "
                                              r"'latent-consistency/lcm-lora-sdv1-5' are not in the local cache: .*"
                                              r"model.lora=<a local folder or .safetensors file>"):
        load_model(str(tiny_sd), lora="latent-consistency/lcm-lora-sdv1-5")


def test_a_cached_hub_lora_loads_with_the_hub_off_whatever_its_file_is_called(tiny_sd, tiny_lora, monkeypatch,
                                                                             tmp_path):
    import shutil

    from huggingface_hub import constants

    repo = tmp_path / "models--me--my-style"  # the hub cache's layout: refs/main names the snapshot
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    weights = next(tiny_lora.glob("*.safetensors"))
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    shutil.copy(weights, repo / "snapshots" / "0123abcd" / "my_style_v2.safetensors")  # not diffusers' file name
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    hub, local = load_model(str(tiny_sd), lora="me/my-style"), load_model(str(tiny_sd), lora=str(tiny_lora))
    x, cond = torch.randn(1, 4, 16, 16), local.condition([""])
    torch.testing.assert_close(hub.predict(x, 501, cond), local.predict(x, 501, cond))
    assert hub.describe()["lora"] == "me/my-style"  # recorded as given
