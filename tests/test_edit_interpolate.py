"""``python -m preciseinv.edit`` and ``python -m preciseinv.interpolate`` end to end on tiny models."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

pytestmark = pytest.mark.slow
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def cli(module, *args, cwd):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=600)


def test_batch_edit_writes_edits_grids_and_failure_records(tiny_sd, tmp_path):
    from preciseinv.testing.tiny import write_images

    write_images(tmp_path, ["cat.png", "sub/dog.jpg"], size=40)
    rows = [{"image": "cat.png", "source": "a cat", "target": "a dog"},
            {"image": "sub/dog.jpg", "source": "a dog", "target": "a cat", "id": "dog-to-cat"},
            {"image": "missing.png", "source": "x", "target": "y"},
            {"image": "cat.png", "source": "a cat"}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    out = tmp_path / "out"
    proc = cli("preciseinv.edit", f"model.path={tiny_sd}", f"pairs={tmp_path / 'pairs.jsonl'}",
               "~logger", f"output_dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {json.loads(line)["id"]: json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()}
    assert set(records) == {"000000-cat", "dog-to-cat"}
    assert records["dog-to-cat"]["prompt"] == "a dog" and records["dog-to-cat"]["target"] == "a cat"
    for rec in records.values():
        edit, grid = Image.open(out / rec["edit"]), Image.open(out / rec["grid"])
        assert edit.size == (32, 32) and grid.size == (96, 32)
    reasons = [json.loads(line)["reason"] for line in (out / "failures.jsonl").read_text().splitlines()]
    assert any("does not exist" in r for r in reasons) and "no target prompt" in reasons
    assert any("not JSON" in r for r in reasons) and len(reasons) == 3
    rows[0]["target"] = "a bird"  # one row's target changed: the rerun redoes that edit, keeps the other
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n")
    proc = cli("preciseinv.edit", f"model.path={tiny_sd}", f"pairs={tmp_path / 'pairs.jsonl'}",
               "~logger", f"output_dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = {json.loads(line)["id"]: json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()}
    assert again["000000-cat"]["target"] == "a bird" and again["dog-to-cat"] == records["dog-to-cat"], proc.stdout
    proc = cli("preciseinv.edit", f"model.path={tiny_sd}", f"pairs={tmp_path / 'pairs.jsonl'}", "edit_guidance_scale=2",
               "~logger", f"output_dir={out}", cwd=tmp_path)
    assert proc.returncode == 2 and "edit_guidance_scale=7.5 there, 2 now" in proc.stderr


def test_single_image_edit_and_api_agree(tiny_sd, tmp_path):
    from preciseinv import Inverter
    from preciseinv.datamodules.images import load_image
    from preciseinv.testing.tiny import write_images

    (img,) = write_images(tmp_path, ["photo.png"], size=32)
    out = tmp_path / "out"
    proc = cli("preciseinv.edit", f"model.path={tiny_sd}", f"image={img}", "source=a photo", "target=a painting",
               "edit_guidance_scale=5", "~logger", f"output_dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    inv = Inverter(str(tiny_sd), device="cpu")
    _, edited = inv.edit([img], ["a photo"], ["a painting"], guidance_scale=5)
    saved = load_image(out / "edit" / "photo.png", 32)
    assert (saved - edited[0]).abs().max() < 2 / 255 + 1e-4  # the same edit, up to 8-bit rounding


def test_interpolation_endpoints_reproduce_the_reconstructions(tmp_path):
    from preciseinv import Inverter
    from preciseinv.datamodules.images import load_image
    from preciseinv.testing.tiny import write_images

    a, b = write_images(tmp_path, ["a.png", "b.png"], size=32)
    inv = Inverter("mini", device="cpu")
    res = inv.invert([a, b])
    inv.save(tmp_path / "b.safetensors", res, 1, "b")
    out = tmp_path / "out"
    proc = cli("preciseinv.interpolate", f"a={a}", f"b={tmp_path / 'b.safetensors'}", "frames=5", "device=cpu",
               f"output_dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = sorted((out / "frames").glob("*.png"))
    assert len(frames) == 5 and Image.open(out / "strip.png").size == (160, 32)
    assert Image.open(out / "interpolation.gif").n_frames == 8  # forwards then back
    recon = inv.reconstruct(res.latents)
    for path, expected in ((frames[0], recon[0]), (frames[-1], recon[1])):
        assert (load_image(path, 32) - expected).abs().max() < 2 / 255 + 1e-4
    report = json.loads((out / "interpolation.json").read_text())
    assert report["psnr_a"] > 30
    heading, values = proc.stdout.strip().splitlines()[-3:-1]  # a table like fit's, then where the outputs are
    assert heading.split() == ["frames", "mode", "PSNR", "a", "PSNR", "b"]
    assert values.split()[:3] == ["5", "slerp", f"{report['psnr_a']:.2f}"] and str(out) in proc.stdout


def test_interpolation_bad_endpoint_is_one_line(tmp_path):
    from preciseinv.errors import PreciseInvError
    from preciseinv.interpolate import endpoint

    proc = cli("preciseinv.interpolate", "a=nope.png", "b=nope2.png", f"output_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 2 and "'nope.png': no such file (an endpoint is an image file or a" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # a mistake leaves no folder
    proc = cli("preciseinv.interpolate", "a=nope.png", "b=nope2.png", "frames=1", cwd=tmp_path)  # Hydra's default
    assert proc.returncode == 2 and not any((tmp_path / "outputs").iterdir())  # outputs/<date>/<time>-interpolate/
    with pytest.raises(PreciseInvError, match="is neither an image file nor a .safetensors latent file"):
        endpoint(None, str(tmp_path), "")  # a folder
    assert "Traceback" not in proc.stderr


def test_coupled_methods_interpolate_both_states_and_refuse_half_of_them(tmp_path):
    """EDICT, BDIA and BELM reconstruct from x*_T and a companion state: both travel the path, so each end is the
    exact reconstruction; x*_T alone, or a file of the other kind, is one line naming the method to use."""
    import torch

    from preciseinv import Inverter
    from preciseinv.errors import PreciseInvError
    from preciseinv.interpolate import endpoint
    from preciseinv.testing.tiny import write_images

    a, b = write_images(tmp_path, ["a.png", "b.png"], size=32)
    plain = Inverter("mini", device="cpu")
    plain.save(tmp_path / "plain.safetensors", plain.invert([a]), 0, "a")
    for method in ("edict", "bdia", "belm"):
        inv = Inverter("mini", method=method, device="cpu")
        res = inv.invert([a, b])
        inv.save(tmp_path / f"{method}.safetensors", res, 1, "b")
        latent_b, _, noises_b, companion_b = endpoint(inv, str(tmp_path / f"{method}.safetensors"), "")
        torch.testing.assert_close(companion_b[0], res.result.companion[1])
        frames = inv.interpolate(res.latents[:1], latent_b, 4, companion_a=res.result.companion[:1],
                                 companion_b=companion_b)
        recon = inv.reconstruct(res.latents, companion=res.result.companion)
        torch.testing.assert_close(frames[[0, -1]], recon, atol=1e-5, rtol=0)
        assert (frames[1] - frames[0]).abs().mean() > 1e-3  # the middle is somewhere else
        with pytest.raises(PreciseInvError, match=f"method={method} interpolates two coupled states"):
            inv.interpolate(res.latents[:1], res.latents[1:], 4)
        with pytest.raises(PreciseInvError, match="plain.safetensors was inverted with method=preciseinv \\(one "
                                                  "state\\): interpolate it with method=preciseinv"):
            endpoint(inv, str(tmp_path / "plain.safetensors"), "")
        with pytest.raises(PreciseInvError, match=f"inverted with method={method} \\(two coupled states\\): "
                                                  f"interpolate it with method={method}"):
            endpoint(plain, str(tmp_path / f"{method}.safetensors"), "")


def test_interpolation_decodes_by_the_latent_files_settings(tmp_path):
    """A latent made with num_steps=4 is decoded with its own 4-step schedule (the default is 2), an image end is
    inverted under the same settings, and two files of different schedules are one line naming the difference."""
    import torch

    from preciseinv import Inverter, reconstruct_file
    from preciseinv.errors import PreciseInvError
    from preciseinv.interpolate import run
    from preciseinv.presets import compose
    from preciseinv.testing.tiny import write_images

    a, b = write_images(tmp_path, ["a.png", "b.png"], size=32)
    four, two = Inverter("mini", num_steps=4, device="cpu"), Inverter("mini", device="cpu")
    four.save(tmp_path / "a4.safetensors", four.invert([a]), 0, "a")
    two.save(tmp_path / "b2.safetensors", two.invert([b]), 0, "b")

    def interpolate(*overrides):
        return run(compose("interpolate", [*overrides, "frames=3", "device=cpu", f"output_dir={tmp_path / 'out'}"]))

    report = interpolate(f"a={tmp_path / 'a4.safetensors'}", f"b={b}")
    from preciseinv.datamodules.images import load_image

    first = load_image(tmp_path / "out" / "frames" / "frame_000.png", 32)
    expected, _ = reconstruct_file(tmp_path / "a4.safetensors", device="cpu")
    assert (first - expected).abs().max() < 2 / 255 + 1e-4  # the file's own 4-step reconstruction
    assert report["psnr_b"] > 30  # the image end, inverted with 4 steps too, comes back
    with pytest.raises(PreciseInvError, match="different settings \\(num_steps 4 against 2; timesteps"):
        interpolate(f"a={tmp_path / 'a4.safetensors'}", f"b={tmp_path / 'b2.safetensors'}")
    assert torch.isfinite(first).all()


def test_a_latent_file_end_decodes_with_the_prompt_it_was_inverted_with(tiny_sd, tmp_path):
    """Without prompt=, the frames take the latent file's own prompt, so its end frame is its reconstruction; two
    files of different prompts need one given; a prompt given that differs from a file's is a warning."""
    from preciseinv import Inverter, reconstruct_file
    from preciseinv.datamodules.images import load_image
    from preciseinv.errors import PreciseInvError
    from preciseinv.interpolate import run
    from preciseinv.presets import compose
    from preciseinv.testing.tiny import write_images

    a, b = write_images(tmp_path, ["a.png", "b.png"], size=32)
    inv = Inverter(str(tiny_sd), method="ddim", device="cpu")
    inv.save(tmp_path / "b.safetensors", inv.invert([b], ["a rocket"]), 0, "b")
    inv.save(tmp_path / "a.safetensors", inv.invert([a], ["a cat"]), 0, "a")

    def interpolate(*overrides):
        return run(compose("interpolate", [f"model.path={tiny_sd}", "method=ddim", "frames=3", "device=cpu",
                                           f"output_dir={tmp_path / 'out'}", *overrides]))

    interpolate(f"a={a}", f"b={tmp_path / 'b.safetensors'}")
    last = load_image(tmp_path / "out" / "frames" / "frame_002.png", 32)
    expected, _ = reconstruct_file(tmp_path / "b.safetensors", device="cpu")
    assert (last - expected).abs().max() < 2 / 255 + 1e-4  # decoded with "a rocket", the file's prompt
    with pytest.raises(PreciseInvError, match="inverted with different prompts \\(a: 'a cat', b: 'a rocket'\\)"):
        interpolate(f"a={tmp_path / 'a.safetensors'}", f"b={tmp_path / 'b.safetensors'}")
    with pytest.warns(UserWarning, match="b was inverted with prompt 'a rocket': with prompt='a cat' its end frame"):
        interpolate(f"a={tmp_path / 'a.safetensors'}", f"b={tmp_path / 'b.safetensors'}", "prompt=a cat")


@pytest.mark.parametrize("args,message", [
    (["image=IMG", "source=a cat"], "image=IMG needs target='...' too: the prompt it was made with and the one to edit"),
    (["image=IMG"], "needs source='...' and target='...' too"),
    (["image=nope.png", "source=a", "target=b"], "image=nope.png: no such file"),
    (["image=IMG", "pairs=PAIRS", "source=a", "target=b"], "give image=<path> (one edit) or pairs=<file> (many), not both"),
])
def test_a_mistake_in_the_one_edit_is_one_line(args, message, tmp_path, monkeypatch):
    """image= on the command line is one edit: a missing prompt or file is a mistake of the command (one line,
    exit 2 from the command), not a failure record of a run that then says it finished."""
    from preciseinv.datamodules.edit_pairs import EditPairsDataModule
    from preciseinv.errors import PreciseInvError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cat.png").write_bytes(b"")
    kwargs = dict(a.replace("IMG", "cat.png").replace("PAIRS", "p.jsonl").split("=", 1) for a in args)
    with pytest.raises(PreciseInvError) as err:
        EditPairsDataModule(**kwargs, resolution=32)
    assert message.replace("IMG", "cat.png") in str(err.value) and "\n" not in str(err.value)


def test_edit_with_an_unconditional_model_is_one_line_and_writes_nothing(tmp_path):
    from hydra import compose, initialize_config_dir

    from preciseinv.errors import PreciseInvError
    from preciseinv.fit import run
    from preciseinv.presets import CONFIG_DIR, register_resolvers
    from preciseinv.testing.tiny import write_images

    image, = write_images(tmp_path, ["cat.png"], size=32)
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("edit", [f"image={image}", "source=a cat", "target=a dog", "~logger",
                               f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(PreciseInvError, match="model mini takes no text prompt, so it cannot edit by prompt"):
        run(cfg)
    assert not (tmp_path / "out").exists()
