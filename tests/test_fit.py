"""``python -m preciseinv.fit`` end to end, as a user runs it: subprocesses (the family matrix in process, through
``fit.run``), real files, offline."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from preciseinv.datamodules.images import load_image
from preciseinv.metrics import psnr

pytestmark = pytest.mark.slow
ASSETS = Path(__file__).resolve().parents[1] / "preciseinv" / "assets"


def fit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("WANDB_SILENT", None)  # as in a user's shell: quieting W&B is the console's job (conftest.py sets it)
    return subprocess.run([sys.executable, "-m", "preciseinv.fit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def default_runs(tmp_path_factory, fit_in_process):
    """The README's default command from an unrelated directory (its console output under "console"), and the same
    run with DDIM inversion and with the paper's solver (in process: the same code after argument parsing)."""
    root = tmp_path_factory.mktemp("default")
    proc = fit(f"output_dir={root / 'run-preciseinv'}", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, args in {"ddim": ["method=ddim"], "adamw": ["solver=adamw"]}.items():
        fit_in_process(*args, f"output_dir={root / ('run-' + name)}")
    return {**{name: root / f"run-{name}" for name in ("preciseinv", "ddim", "adamw")}, "console": proc}


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_a_run_given_output_dir_keeps_hydras_record_there(default_runs):
    root = default_runs["preciseinv"].parent  # the working directory of the command
    assert (default_runs["preciseinv"] / ".hydra" / "overrides.yaml").is_file()
    assert not (root / "outputs").exists()  # no outputs/<date>/<time>/.hydra/ left in the working directory
    # a rerun refused there (other settings) leaves the record of the run that made the folder, not its own
    record = {p.name: p.read_bytes() for p in (default_runs["preciseinv"] / ".hydra").glob("*.yaml")}
    proc = fit(f"output_dir={default_runs['preciseinv']}", "method=ddim", cwd=root)
    assert proc.returncode == 2 and "other settings" in proc.stderr
    assert {p.name: p.read_bytes() for p in (default_runs["preciseinv"] / ".hydra").glob("*.yaml")} == record


def test_default_run_shows_the_point_of_the_method(default_runs):
    precise, ddim = summary(default_runs["preciseinv"]), summary(default_runs["ddim"])
    assert precise["n"] == ddim["n"] == 4
    assert not (default_runs["preciseinv"] / "records").exists()  # the rank files are merged and gone
    assert precise["psnr_mean"] >= 36.5  # 37.51 measured (docs/benchmarks.md)
    assert precise["psnr_mean"] >= ddim["psnr_mean"] + 15.0
    assert precise["converged_fraction"] == 1.0 and ddim["converged_fraction"] == 0.0  # every image reaches eta
    assert precise["cost_mean"] <= 200 and ddim["cost_mean"] == ddim["nfe_forward_mean"] == 2
    assert ddim["nfe_backward_mean"] == 0
    # the step that matters (t = 500): PreciseInv's residual is orders of magnitude below DDIM inversion's
    precise_top = max(r["residual"][1] for r in manifest(default_runs["preciseinv"]))
    ddim_top = min(r["residual"][1] for r in manifest(default_runs["ddim"]))
    assert precise_top < 2e-2 and precise_top * 20 < ddim_top


def test_a_rerun_without_wandb_does_not_point_at_an_earlier_runs_offline_run(default_runs, monkeypatch):
    """The default run left an offline W&B run in its folder; a rerun there with ~logger, or logging online, says
    nothing of it."""
    from preciseinv.fit import closing_lines
    from preciseinv.presets import compose

    out = default_runs["preciseinv"]
    with_wandb, without = (closing_lines(compose("fit", [*args, f"output_dir={out}"]), summary(out))
                           for args in ([], ["~logger"]))
    assert with_wandb[-1].startswith(f"W&B run saved offline: upload with `wandb sync {out / 'wandb'}")
    assert without[-1] == f"outputs in {out}" and not any("W&B" in line for line in without)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the tests' offline mode would make it log offline
    online = closing_lines(compose("fit", ["logger.offline=false", f"output_dir={out}"]), summary(out))
    assert online[-1] == f"outputs in {out}"


def test_the_console_is_one_header_the_bar_and_a_table(default_runs):
    """The default command's console: a header naming what runs, the progress bar, a table, where the outputs are;
    none of Lightning's, Hydra's or W&B's chatter (W&B logs offline in the default run)."""
    proc, out = default_runs["console"], default_runs["preciseinv"]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("preciseinv: model=mini method=preciseinv solver=hybrid") and "images=4" in lines[0]
    assert lines[-4].split()[:3] == ["images", "failed", "PSNR"] and lines[-3].split()[0] == "4"
    assert lines[-2] == f"outputs in {out}"
    assert lines[-1].startswith(f"W&B run saved offline: upload with `wandb sync {out / 'wandb'}")
    everything = proc.stdout + proc.stderr
    for noise in ("GPU available", "TPU available", "Tip:", "[HYDRA]", "deprecated", "LeafSpec", "wandb:"):
        assert noise not in everything, noise


def test_true_half_precision_is_half_weights_and_an_fp32_solver(tmp_path, fit_in_process):
    """Lightning's bf16-true (which alone would make eps* and the solver state bf16, and crashed the solver's
    masked writes): the networks' weights in bf16 with no autocast, the solver in fp32, as good as fp32 here (two
    of the bundled images at eta = 1e-2: bf16 kernels are slow on a CPU)."""
    out, images = tmp_path / "out", tmp_path / "images"
    images.mkdir()
    for name in ("astronaut.png", "coffee.png"):
        shutil.copy(ASSETS / "images" / name, images / name)
    common = ["~logger", f"data.root={images}", "method.eta=1e-2"]
    half = fit_in_process("trainer.precision=bf16-true", f"output_dir={out}", *common)
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["dtype"] == "bfloat16" and run["trainer"]["precision"] == "32-true"
    from safetensors import safe_open

    for rec in manifest(out):  # the latents record the weights they were found with: bf16 ones
        with safe_open(out / rec["latent"], "pt") as f:
            assert json.loads(f.metadata()["preciseinv"])["model"]["dtype"] == "bfloat16"
            assert f.get_tensor("latent").dtype == torch.float32
    assert half["converged_fraction"] == 1.0 and all(max(r["residual"]) < 1e-2 for r in manifest(out))
    fp32 = fit_in_process(f"output_dir={tmp_path / 'fp32'}", *common)  # bf16 weights: not half a dB below fp32
    assert fp32["n"] == 2 and half["psnr_mean"] > fp32["psnr_mean"] - 0.5, (half["psnr_mean"], fp32["psnr_mean"])


def test_paper_solver_is_unchanged_and_the_default_beats_it(default_runs):
    """solver=adamw reproduces the paper's recipe's figures on the default run (32.62 dB, 604 network calls per
    image, docs/benchmarks.md); the default solver is better and cheaper at the same cap."""
    adamw, precise = summary(default_runs["adamw"]), summary(default_runs["preciseinv"])
    assert abs(adamw["psnr_mean"] - 32.62) < 0.05 and adamw["cost_mean"] == 604
    assert adamw["config"]["method"]["solver"]["_target_"] == "preciseinv.solvers.AdamW"
    assert precise["psnr_mean"] > adamw["psnr_mean"] + 4 and precise["cost_mean"] * 3 < adamw["cost_mean"]
    assert all(p in ("init", "adamw", None) for r in manifest(default_runs["adamw"]) for p in r["phase"])


def test_output_contract(default_runs):
    out = default_runs["preciseinv"]
    s = summary(out)
    for key in ("n", "psnr_mean", "ssim_mean", "lpips_mean", "seconds_per_image", "converged_fraction",
                "nfe_forward_mean", "nfe_backward_mean", "cost_mean", "phases", "peak_memory_mb", "latent_mse_mean",
                "config"):
        assert key in s
    assert s["config"]["model"]["name"] == "mini" and s["config"]["method"]["eta"] == 1e-3
    for rec in manifest(out):
        for key in ("id", "source", "psnr", "ssim", "lpips", "nfe_forward", "nfe_backward", "seconds",
                    "converged", "residual"):
            assert key in rec
        assert len(rec["converged"]) == len(rec["residual"]) == len(rec["iters"]) == 2
        assert all(isinstance(c, bool) for c in rec["converged"])
        # converged exactly when the residual went below eta; otherwise the cap was reached
        for res, conv, iters, phase in zip(rec["residual"], rec["converged"], rec["iters"], rec["phase"]):
            assert conv == (res < 1e-3) and (conv or iters == 200) and (phase is None) == (not conv)
        assert rec["cost"] == rec["nfe_forward"] + 2 * rec["nfe_backward"] and rec["peak_memory_mb"] > 0
        assert (out / "latents" / f"{rec['id']}.safetensors").is_file()
        assert (out / "recon" / f"{rec['id']}.png").is_file()


def test_reconstruction_from_a_latent_file_reproduces_the_manifest(default_runs):
    from preciseinv import reconstruct_file

    for rec in manifest(default_runs["preciseinv"]):
        image, meta = reconstruct_file(default_runs["preciseinv"] / rec["latent"], device="cpu")
        assert meta["method"] == "preciseinv" and meta["schedule"]["timesteps"] == [0, 500]
        target = load_image(rec["source"], 32)
        assert abs(psnr(image[None], target[None]).item() - rec["psnr"]) < 0.01


@pytest.mark.parametrize("family,sampler,eta", [
    ("tiny_sd", "ddim", 1e-4), ("tiny_sd_v", "ddim", 1e-4), ("tiny_sdxl", "ddim", 1e-4), ("tiny_sd3", "euler", 1e-4),
    ("tiny_lcm", "lcm", 1e-3),  # LCM's top step (t = 999) inverts the consistency function: worse conditioned
    ("tiny_sd", "ddpm", 1e-4), ("tiny_sdxl_turbo", "ddim", 1e-3),  # Turbo: trailing timesteps, t = 999 on top
    ("tiny_lora", "lcm", 1e-3),  # LCM-LoRA style: LoRA fused into the SD UNet, LCM sampler
    ("tiny_pixel", "ddpm", 1e-4),  # pixel space, ancestral sampler
    ("tiny_sdxl", "ddpm", 1e-4), ("tiny_lcm", "ddim", 1e-3),  # the other sampler each family supports
    ("tiny_flux", "euler", 1e-4), ("tiny_flux_dev", "euler", 1e-4),  # FLUX.1 [schnell]- and [dev]-shaped
    ("tiny_sd35", "euler", 1e-4),  # SD3.5: the scheduler's resolution-dependent shift
])
def test_tiny_stable_diffusion_end_to_end(family, sampler, eta, request, tmp_path, fit_in_process):
    """SD1 (epsilon), SD2-style (v-prediction), SDXL-, SD3- (flow, Euler) and LCM-shaped pipelines from disk, and
    the DDPM sampler (eps* and z* learned jointly): VAE latents, text conditioning, every step reaches eta, and
    the latent file alone (x*_T, plus the step noises for lcm/ddpm) reproduces the reconstruction, with the
    default solver (the paper's constant-lr AdamW jitters near 1e-3 on these random models at lr 0.1).
    """
    from preciseinv.testing.tiny import write_images

    from preciseinv import reconstruct_file

    tiny_sd = request.getfixturevalue(family if family != "tiny_lora" else "tiny_sd")
    lora = [f"model.lora={request.getfixturevalue('tiny_lora')}"] if family == "tiny_lora" else []
    write_images(tmp_path / "imgs", ["a.png", "b/c.jpg", "d e.png"], size=40)
    out = tmp_path / "out"
    size = ["data.resolution=32"] if "flux" in family else []  # FLUX's native size is 128 latent pixels
    prompt = "" if family == "tiny_pixel" else "a photo"  # a pixel DDPM takes none (asked for: one line)
    fit_in_process(f"model.path={tiny_sd}", "data=folder", f"data.root={tmp_path / 'imgs'}", "data.num_workers=0",
                   f"data.prompt={prompt}", f"method.eta={eta}", "method.max_iters=400", f"output_dir={out}",
                   f"sampler={sampler}", "~logger", *lora, *size)
    records = manifest(out)
    assert sorted(r["id"] for r in records) == ["a", "b/c", "d e"]
    for rec in records:
        assert rec["converged"] == [True, True] and max(rec["residual"]) < eta
        assert rec["latent_mse"] < 10 * eta  # sampling x*_T lands on x0 to the precision eta implies
        image, meta = reconstruct_file(out / rec["latent"], device="cpu")
        assert meta["prompt"] == prompt and len(meta["schedule"]["timesteps"]) == 2
        assert meta["sampler"] == sampler
        assert abs(psnr(image[None], load_image(rec["source"], image.shape[-1])[None]).item() - rec["psnr"]) < 0.01


def test_a_bad_setting_is_one_clear_line_from_the_command(tmp_path):
    """The command prints a PreciseInvError as one line and exits 2 (the other bad settings: in process, below)."""
    proc = fit("model.path=/no/such/model", f"output_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("preciseinv: error:")]
    assert len(errors) == 1 and "does not exist" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # the folder Hydra made for the run: nothing in it, removed


@pytest.mark.parametrize("args,message", [
    (["model.path=nobody/nothing"], r"'nobody/nothing'.*model\.path=<a? ?local"),  # online, unreachable or HF_HUB_OFFLINE=1
    (["method.eta=0"], "method.eta must be > 0"),
    (["num_steps=0"], "num_steps must be a whole number, at least 1"),
    (["num_steps=2.5"], "num_steps must be a whole number, at least 1, got 2.5"),
    (["data=folder", "data.root=EMPTY"], "no images found"),
    (["data=coco"], r"data.root must be set: add data.root=<value> to the command"),
    (["data.resolution=34"], "data.resolution=34 is not a multiple of 4, which this model needs: use 32 or 36"),  # a pixel UNet2DModel
    (["trainer.accelerator=cpu", "trainer.devices=0"], "Trainer: .*devices"),  # Lightning's word, one line
    (["trainer.strategy=nonsense"], "Trainer: .*nonsense"),  # a ValueError of Lightning's
    (["data=folder"], "data.root must be set"),
    (["data=webdataset"], r"data.urls must be set"),
    (["data.batch_size=0"], "data.batch_size must be a positive integer or auto"),
    (["trainer.precision=64-true"], "trainer.precision=64-true is not one this engine runs"),
    (["trainer.precision=nonsense"], "trainer.precision=nonsense is not one this engine runs"),
    (["trainer.precision=bf16-true", "model.dtype=float16"], "but model.dtype=float16: set one of them"),
    (["data.prompt=a cat"], "model mini takes no text prompt: drop data.prompt=a cat, or choose a text-conditioned"),
    (["guidance_scale=3"], "model mini takes no text prompt: drop guidance_scale=3, or choose"),
    (["timesteps=[1,501,900]"], r"expected 2 distinct timesteps, got \[1, 501, 900\] \(num_steps=3 takes these\)"),
    (["timestep_spacing=trailng"], "timestep_spacing must be one of leading, trailing, linspace, or null"),
    (["sampler=ddimm"], "did you mean ddim[?] sampler=ddimm is not a sampler; sampler is one of ddim, ddpm, lcm"),
    (["data.num_workers=-1"], "data.num_workers must be a whole number, 0 .* or more, got -1"),
    (["data.resolution=0"], "data.resolution must be a positive whole number of pixels, or null"),
    (["solver=adamw", "solver.lr=-1"], r"solver.lr must be > 0, got -1"),
    (["data=folder", "data.root=HERE"], "is inside data.root .*: a rerun would invert this run's reconstructions"),
])
def test_bad_settings_raise_one_clear_line(args, message, tmp_path, fit_in_process):
    from preciseinv.errors import PreciseInvError

    (tmp_path / "empty").mkdir()
    args = [a.replace("EMPTY", str(tmp_path / "empty")).replace("HERE", str(tmp_path)) for a in args]
    with pytest.raises(PreciseInvError, match=message) as error:
        fit_in_process(*args, "~logger", f"output_dir={tmp_path / 'out'}")
    assert "\n" not in str(error.value)


def test_unknown_preset_lists_the_known_ones(tmp_path):
    proc = fit("model=sd99", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "model=sd99 is not an option; model is one of" in proc.stderr and "sd15" in proc.stderr


def test_rerun_resumes_and_refuses_other_settings(tmp_path, fit_in_process):
    from preciseinv.errors import PreciseInvError
    from preciseinv.testing.tiny import write_images

    write_images(tmp_path / "imgs", [f"im{i}.png" for i in range(5)], size=40)
    args = ["method=ddim", "data=folder", f"data.root={tmp_path / 'imgs'}", "data.num_workers=0", "data.batch_size=2",
            "~logger", f"output_dir={tmp_path / 'out'}"]
    fit_in_process(*args)
    (tmp_path / "out" / "latents" / "im3.safetensors").unlink()  # as if the run died before this one
    first = {r["id"]: r for r in manifest(tmp_path / "out")}
    fit_in_process(*args)
    records = manifest(tmp_path / "out")
    assert sorted(r["id"] for r in records) == [f"im{i}" for i in range(5)]  # each exactly once
    assert records[0] == first[records[0]["id"]]  # finished samples were not redone
    assert summary(tmp_path / "out")["n"] == 5
    with pytest.raises(PreciseInvError, match=r"holds a run with other settings \(method=ddim there, preciseinv now\)"):
        fit_in_process(*args[1:])  # method=preciseinv into the same folder
    (tmp_path / "out" / "run.json").unlink()  # lost: summary.json's config still says what made the samples
    with pytest.raises(PreciseInvError, match=r"other settings \(method=ddim there, preciseinv now"):
        fit_in_process(*args[1:])
    fit_in_process(*args, "sampler=ddim")  # the model's own sampler, named: the same run, nothing to redo
    assert manifest(tmp_path / "out") == records


def test_a_file_whose_id_changed_with_the_folder_is_not_inverted_twice(tmp_path, fit_in_process):
    """photo.bmp beside photo.tiff: their ids carry the extension; with photo.bmp gone, photo.tiff's id is photo,
    yet the rerun knows it by its file and inverts only the new image."""
    from preciseinv.testing.tiny import write_images

    write_images(tmp_path / "imgs", ["photo.bmp", "photo.tiff", "x.png"], size=32)
    args = ["method=ddim", "data=folder", f"data.root={tmp_path / 'imgs'}", "data.num_workers=0", "~logger",
            f"output_dir={tmp_path / 'out'}"]
    fit_in_process(*args)
    assert sorted(r["id"] for r in manifest(tmp_path / "out")) == ["photo.bmp", "photo.tiff", "x"]
    (tmp_path / "imgs" / "photo.bmp").unlink()
    write_images(tmp_path / "imgs", ["new.png"], size=32)
    fit_in_process(*args)
    records = manifest(tmp_path / "out")
    assert sorted(r["id"] for r in records) == ["new", "photo.bmp", "photo.tiff", "x"]  # no second photo.tiff
    assert [r["source"] for r in records].count(str(tmp_path / "imgs" / "photo.tiff")) == 1


def test_two_process_ddp_writes_every_sample_exactly_once(tmp_path):
    from preciseinv.testing.tiny import write_images

    write_images(tmp_path / "imgs", [f"d{i}/im{i}.png" for i in range(7)], size=40)  # 7: not divisible by 2
    proc = fit("method=ddim", "data=folder", f"data.root={tmp_path / 'imgs'}", "data.num_workers=0",
               "data.batch_size=2", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
               "logger=csv", f"output_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = [r["id"] for r in manifest(tmp_path / "out")]
    assert sorted(ids) == sorted(f"d{i}/im{i}" for i in range(7))
    assert len(list((tmp_path / "out" / "latents").rglob("*.safetensors"))) == 7
    assert summary(tmp_path / "out")["n"] == 7
    import csv  # rank 0 logged metrics aggregated over both ranks

    rows = list(csv.DictReader(open(next((tmp_path / "out" / "logs").rglob("metrics.csv")))))
    assert max(int(float(r["images_done"])) for r in rows if r.get("images_done")) == 7
    pace = json.loads((tmp_path / "out" / "run.json").read_text())["last_run"]  # summed over the two ranks
    assert pace["images"] == 7 and pace["batches"] == 4 and pace["ranks"] == 2  # 4 + 3 images: 2 + 2 batches
    assert pace["steady_images_per_second"] > 0
    # a rerun with fewer unfinished samples than ranks (one new image, two ranks): the rank with nothing to do
    # finishes with the other, where Lightning's own sampler asserted and the run crashed
    write_images(tmp_path / "imgs", ["late.png"], size=40)
    proc = fit("method=ddim", "data=folder", f"data.root={tmp_path / 'imgs'}", "data.num_workers=0",
               "data.batch_size=2", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
               "logger=csv", f"output_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(r["id"] for r in manifest(tmp_path / "out")) == sorted([f"d{i}/im{i}" for i in range(7)] + ["late"])
    pace = json.loads((tmp_path / "out" / "run.json").read_text())["last_run"]
    assert pace["images"] == 1 and pace["batches"] == 1 and pace["ranks"] == 2


def test_a_torn_manifest_line_is_repaired_on_rerun(tmp_path, fit_in_process):
    """A crash (or a full disk) cut the last record short: the rerun redoes that sample, every line parses and
    every sample is in the manifest once."""
    from preciseinv.testing.tiny import write_images

    write_images(tmp_path / "imgs", [f"im{i}.png" for i in range(4)], size=40)
    args = ["method=ddim", "data=folder", f"data.root={tmp_path / 'imgs'}", "data.num_workers=0", "~logger",
            f"output_dir={tmp_path / 'out'}"]
    fit_in_process(*args)
    path = tmp_path / "out" / "manifest.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # the last record torn
    fit_in_process(*args)
    records = [json.loads(line) for line in path.read_text().splitlines()]  # every line parses
    assert sorted(r["id"] for r in records) == [f"im{i}" for i in range(4)]
    assert summary(tmp_path / "out")["n"] == 4


ASPECTS = {"wide": (96, 48), "tall": (40, 80), "square": (50, 50), "panorama": (200, 40)}  # W, H


def write_aspect_images(folder: Path) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (w, h) in ASPECTS.items():
        y, x = np.mgrid[0:h, 0:w]
        smooth = np.stack([x / w, y / h, (x + y) / (w + h)], -1) * 200 + rng.integers(0, 40, (h, w, 3))
        Image.fromarray(smooth.clip(0, 255).astype(np.uint8)).save(folder / f"{name}.png")


@pytest.mark.parametrize("family", ["tiny_sd", "tiny_sdxl", "tiny_sd3", "tiny_flux"])
def test_any_aspect_ratio_inverts_at_its_own_shape(family, request, tmp_path, fit_in_process):
    """data.crop=none: wide, tall, square and panorama images in shape-bucketed batches of 4; every sample once,
    every step reaches eta, every reconstruction keeps its input's aspect ratio and its latent file regenerates it."""
    from PIL import Image

    from preciseinv import reconstruct_file

    from preciseinv.models.loading import size_multiple

    write_aspect_images(tmp_path / "imgs")
    out = tmp_path / "out"
    multiple = size_multiple(request.getfixturevalue(family))
    fit_in_process(f"model.path={request.getfixturevalue(family)}", "data=folder", f"data.root={tmp_path / 'imgs'}",
                   "data.crop=none", "data.resolution=32", "data.batch_size=4", "data.num_workers=0",
                   "method.eta=1e-4", "method.max_iters=400", f"output_dir={out}", "~logger")
    records = manifest(out)
    assert sorted(r["id"] for r in records) == sorted(ASPECTS)
    for rec in records:
        w, h = ASPECTS[rec["id"]]
        H, W = rec["size"]
        assert min(H, W) == 32 and abs(W / H - w / h) < 0.2 * w / h, (rec["id"], rec["size"])
        assert rec["converged"] == [True, True] and rec["latent_mse"] < 1e-3
        assert Image.open(out / rec["recon"]).size == (W, H)
        image, _ = reconstruct_file(out / rec["latent"], device="cpu")
        assert tuple(image.shape[-2:]) == (H, W)
        source = load_image(rec["source"], 32, "none", multiple)  # the latent file alone regenerates the recon
        assert tuple(source.shape[-2:]) == (H, W)
        assert abs(psnr(image[None], source[None]).item() - rec["psnr"]) < 0.01


def test_shape_buckets_stay_exactly_once_under_two_process_ddp(tmp_path):
    write_aspect_images(tmp_path / "imgs")
    proc = fit("method=ddim", "data=folder", f"data.root={tmp_path / 'imgs'}", "data.crop=none",
               "data.num_workers=0", "data.batch_size=2", "trainer.accelerator=cpu", "trainer.devices=2",
               "trainer.strategy=ddp", "~logger", f"output_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = manifest(tmp_path / "out")
    assert sorted(r["id"] for r in records) == sorted(ASPECTS)
    assert len({tuple(r["size"]) for r in records}) == 4
    assert summary(tmp_path / "out")["n"] == len(ASPECTS)


def test_a_square_size_a_transformer_cannot_take_is_one_line(tiny_flux, tmp_path, fit_in_process):
    from preciseinv.errors import PreciseInvError

    with pytest.raises(PreciseInvError) as error:  # tiny FLUX: VAE factor 2 x 2x2 packing = 4
        fit_in_process(f"model.path={tiny_flux}", "data.resolution=42", "~logger", f"output_dir={tmp_path / 'out'}")
    assert str(error.value) == "data.resolution=42 is not a multiple of 4, which this model needs: use 40 or 44"


def test_a_gpu_asked_for_where_there_is_none_says_what_to_use(tmp_path):
    import torch

    from preciseinv.builder import instantiate
    from preciseinv.errors import PreciseInvError
    from preciseinv.presets import compose

    node = compose("fit", ["trainer.accelerator=gpu", f"output_dir={tmp_path}"]).trainer
    if torch.cuda.is_available():  # where there is one, the same setting builds a trainer on it
        assert type(instantiate(node).accelerator).__name__ == "CUDAAccelerator"
        return
    with pytest.raises(PreciseInvError, match=r"^Trainer: .*gpu.*\(trainer\.accelerator=auto uses what the machine "
                                              r"has; cpu runs anywhere\)$"):
        instantiate(node)
