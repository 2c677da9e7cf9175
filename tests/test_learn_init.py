"""``python -m preciseinv.learn_init`` end to end on the mini DDPM: real fit runs of 32-px crops, real files, a
real Lightning training; then fit with init=learned."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from preciseinv.datamodules.images import load_image
from preciseinv.datamodules.inversions import scan_runs
from preciseinv.errors import PreciseInvError
from preciseinv.inits import LearnedStart
from preciseinv.inits.predictor import predicted_state
from preciseinv.mini.images import export_crops
from preciseinv.outputs import load_latent, save_latent

CLIP = Path(__file__).resolve().parents[1] / "benchmarks" / "assets" / "mini-ddpm-clip"
QUICK = ["trainer.max_epochs=20", "data.batch_size=8", "trainer.enable_progress_bar=false"]


def learn(*overrides: str) -> dict:
    """``learn_init.run`` on the composed config, in this process (the command after its argument parsing)."""
    from preciseinv.learn_init import run
    from preciseinv.presets import compose

    return run(compose("learn_init", list(overrides)))


def command(module: str, *args: str, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.Popen([sys.executable, "-m", f"preciseinv.{module}", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fit_in_process):
    """A fit of 48 training crops, a predictor learned from it, and 8 other crops. The fit stops at eta = 1e-2 (half
    the time of 1e-3): the predictor learns from the residual of each step's input, x*_1, which is the DDIM start
    for both etas on the mini model (its t = 0 step's DDIM start is below 1e-3)."""
    root = tmp_path_factory.mktemp("learn_init")
    export_crops(root / "train", 48, seed=101)
    export_crops(root / "other", 8, seed=102)
    fit_in_process("data=folder", f"data.root={root / 'train'}", f"output_dir={root / 'run'}", "~logger",
                   "lpips=false", "data.batch_size=48", "method.eta=1e-2")
    info = learn(f"runs=[{root / 'run'}]", f"output_dir={root / 'predictor'}", *QUICK)
    return root, info


def test_latent_files_keep_x0_and_the_states(trained):
    root, _ = trained
    tensors, meta = load_latent(next((root / "run" / "latents").glob("*.safetensors")))
    assert set(tensors) == {"latent", "x0", "state_1"} and meta["init"] == ["ddim", "ddim"]
    record = json.loads((root / "run" / "manifest.jsonl").read_text().splitlines()[0])
    assert record["init"] == ["ddim", "ddim"]


def test_the_learned_start_lowers_the_residual_on_other_images(trained):
    from preciseinv.api import Inverter

    root, info = trained
    assert set(os.listdir(root / "predictor")) >= {"predictor.safetensors", "predictor.json", "config.yaml"}
    assert info["identity"]["source"] == "embedded:mini-ddpm" and info["identity"]["state_shape"] == [3, 32, 32]
    assert info["trained"]["best_val_residual"] < info["trained"]["last"]["val/residual_ddim"]
    inv = Inverter("mini", device="cpu")  # x*_1 of the other images: step 1's input
    images = torch.stack([load_image(p, 32) for p in sorted((root / "other").glob("*.png"))])
    result = inv.invert(images).result
    x0, x_prev = result.x0, result.states[0]
    start, sampler, model = LearnedStart(root / "predictor"), inv.engine.sampler, inv.model
    with torch.no_grad():
        x_ddim = sampler.invert_step(model.predict, x_prev, 1)
        x_pred = predicted_state(start.net, sampler, 1, x_prev, x_ddim, sampler.noise(x0, x_ddim, 1))
        r_pred, r_ddim = ((sampler.denoise(model.predict, x, 1) - x_prev).pow(2).flatten(1).mean(1)
                          for x in (x_pred, x_ddim))
    assert r_pred.mean() < r_ddim.mean() and int((r_pred < r_ddim).sum()) >= 5


def test_fit_with_the_learned_start_records_it_and_counts_its_calls(trained, fit_in_process, tmp_path):
    root, _ = trained
    common = ["data=folder", f"data.root={root / 'other'}", "~logger", "lpips=false", "data.batch_size=8"]
    learned = fit_in_process(*common, f"output_dir={tmp_path / 'learned'}", "init=learned",
                             f"init.path={root / 'predictor'}", "init.steps=all")  # whatever the judge kept
    assert learned["n"] == 8
    records = [json.loads(line) for line in (tmp_path / "learned" / "manifest.jsonl").read_text().splitlines()]
    # t_1 = 0: every training inversion's DDIM start met eta there, so it was not learned and keeps that start
    assert json.loads((root / "predictor" / "predictor.json").read_text())["trained_steps"] == [1]
    assert all(r["init"][0] == "ddim" and r["init"][1] in ("learned", "ddim") for r in records)
    assert any(r["init"][1] == "learned" for r in records)
    assert all(r["nfe_forward"] >= 1 + 3 + sum(r["iters"]) + 2 for r in records)  # the learned step's start: 3 calls
    # a latent file regenerates its image without the predictor (where the solver started is not needed)
    from preciseinv.api import reconstruct_file

    moved = tmp_path / "moved"
    (root / "predictor").rename(moved)
    try:
        image, meta = reconstruct_file(tmp_path / "learned" / "latents" / f"{records[0]['id']}.safetensors",
                                       device="cpu")
    finally:
        moved.rename(root / "predictor")
    assert image.shape == (3, 32, 32) and meta["init"] == records[0]["init"]
    # the same folder may resume with the other start: init does not change what a latent means
    again = fit_in_process(*common, f"output_dir={tmp_path / 'learned'}", "init=ddim")
    assert again["n"] == 8


def test_the_judge_keeps_a_step_only_where_the_held_out_solves_got_cheaper(trained):
    from preciseinv.api import Inverter
    from preciseinv.inits import Start
    from preciseinv.inits.judge import judge_steps

    root, _ = trained
    pairs = torch.load(root / "predictor" / "pairs.pt")
    rows = (pairs["k"] == 1).nonzero().squeeze(1)[:4]  # four images' second steps
    engine = Inverter("mini", device="cpu").engine
    method, sampler = engine.method, engine.sampler

    def oracle(denoiser, sampler, x0, x_prev, k, cond=None, noise=None):  # the solution itself, at 3 calls
        problem, _ = method.solve(denoiser, sampler, x0, x_prev, k, sampler.invert_step(denoiser, x_prev, k))
        return Start(problem.state().detach(), torch.full((len(x0),), 3), ["learned"] * len(x0))

    def far(denoiser, sampler, x0, x_prev, k, cond=None, noise=None):  # the DDIM start pushed away, at 1 call
        x = sampler.invert_step(denoiser, x_prev, k)
        return Start(x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)),
                     torch.ones(len(x0), dtype=torch.long), ["learned"] * len(x0))

    good, bad = (judge_steps(method, engine, start, [1], pairs, rows)[1] for start in (oracle, far))
    assert good["pairs"] == 4 and good["kept"] and good["learned"]["cost"] < 10 < good["ddim"]["cost"]
    assert not bad["kept"] and bad["learned"]["cost"] > bad["ddim"]["cost"] and bad["saved_low"] < bad["saved"] < 0
    assert good["ddim"] == bad["ddim"]  # the DDIM start's solves are the same both times


def test_a_predictor_for_another_model_is_refused_before_inverting(trained, fit_in_process, tmp_path):
    root, _ = trained
    with pytest.raises(PreciseInvError, match="trained for another model or schedule") as err:
        fit_in_process("data=folder", f"data.root={root / 'other'}", f"output_dir={tmp_path / 'clip'}", "~logger",
                       "lpips=false", f"model.path={CLIP}", "init=learned", f"init.path={root / 'predictor'}")
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "clip").glob("latents/*"))


def test_older_files_and_other_methods_are_skipped_with_one_line(trained, tmp_path):
    root, _ = trained
    run = tmp_path / "run"
    (run / "latents").mkdir(parents=True)
    files = sorted((root / "run" / "latents").glob("*.safetensors"))[:5]
    for i, path in enumerate(files):
        tensors, meta = load_latent(path)
        if i < 3:  # as written before latent files kept x0 and the states
            save_latent(run / "latents" / path.name, tensors["latent"], meta)
        else:
            save_latent(run / "latents" / path.name, tensors["latent"], meta,
                        {k: v for k, v in tensors.items() if k != "latent"})
    scan = scan_runs([run])
    assert len(scan.files) == 2
    line = scan.skipped_line()
    assert "\n" not in line and "skipped 3 latent file(s)" in line and "written before" in line


def test_a_step_above_an_unsolved_one_is_not_learned_from(trained, tmp_path):
    from preciseinv.datamodules.inversions import build_pairs

    root, _ = trained
    run = tmp_path / "run"
    (run / "latents").mkdir(parents=True)
    for i, path in enumerate(sorted((root / "run" / "latents").glob("*.safetensors"))[:3]):
        tensors, meta = load_latent(path)
        if i == 0:  # its first step stopped above eta: x*_1 is no solution
            meta = {**meta, "residual": [10 * meta["eta"], *meta["residual"][1:]]}
        save_latent(run / "latents" / path.name, tensors["latent"], meta,
                    {k: v for k, v in tensors.items() if k != "latent"})
    pairs = build_pairs(scan_runs([run]), "cpu")
    assert pairs["above_unsolved"] == 1 and len(pairs["k"]) == 5  # 3 images x 2 steps, less the one
    assert (pairs["k"][pairs["image"] == 0] == 0).all()
    # a second run holding the same images: each is learned from once (one side of the split)
    shutil.copytree(run, tmp_path / "again")
    both = build_pairs(scan_runs([run, tmp_path / "again"]), "cpu")
    assert both["repeated"] == 3 and both["images"] == pairs["images"] and len(both["k"]) == 5
    for path in (tmp_path / "again" / "latents").glob("*.safetensors"):  # the same pictures, read from other paths
        tensors, meta = load_latent(path)
        save_latent(path, tensors["latent"], {**meta, "source": f"/elsewhere/{path.stem}.png"},
                    {k: v for k, v in tensors.items() if k != "latent"})
    assert build_pairs(scan_runs([run, tmp_path / "again"]), "cpu")["repeated"] == 3


def test_mistakes_are_one_line(trained, fit_in_process, tmp_path):
    root, _ = trained
    with pytest.raises(PreciseInvError, match="no runs given"):
        learn("runs=[]", f"output_dir={tmp_path / 'a'}")
    with pytest.raises(PreciseInvError, match="is not the output_dir of a fit run"):
        learn(f"runs=[{tmp_path / 'nothing'}]", f"output_dir={tmp_path / 'b'}")
    (tmp_path / "sharded" / "shards").mkdir(parents=True)  # a run written with writer=webdataset
    with pytest.raises(PreciseInvError, match="was written with writer=webdataset .*invert the images it learns from "
                                              "with writer=files"):
        learn(f"runs=[{tmp_path / 'sharded'}]", f"output_dir={tmp_path / 'b'}")
    export_crops(tmp_path / "two", 2, seed=103)
    fit_in_process("data=folder", f"data.root={tmp_path / 'two'}", f"output_dir={tmp_path / 'clip'}", "~logger",
                   "lpips=false", f"model.path={CLIP}")
    with pytest.raises(PreciseInvError, match=r"holds a training with other settings \(runs=") as err:
        learn(f"runs=[{tmp_path / 'clip'}]", f"output_dir={root / 'predictor'}", *QUICK)  # a finished one's folder
    assert "\n" not in str(err.value)
    proc = command("learn_init", f"runs=[{root / 'run'},{tmp_path / 'clip'}]", f"output_dir={tmp_path / 'c'}")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and err.strip().count("\n") == 0, err
    assert "runs mix models or schedules" in err and "mini-ddpm-clip" in err


def test_a_killed_training_resumes_when_the_command_is_rerun(trained, tmp_path):
    root, _ = trained
    out = tmp_path / "predictor"
    args = [f"runs=[{root / 'run'}]", f"output_dir={out}", "trainer.max_epochs=4", "data.batch_size=8",
            "callbacks.early_stopping.patience=100", "trainer.enable_progress_bar=false"]
    proc = command("learn_init", *args)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the checkpoint is renamed into place whole; let the next epoch start
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (out / "predictor.json").exists()
    epoch = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    rerun = command("learn_init", *args)
    shown, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-2000:]
    info = json.loads((out / "predictor.json").read_text())
    assert info["trained"]["epochs"] == 4
    # init=learned starts from the prediction only at the steps where the held-out solves from it were cheaper
    judged = info["judged"]["1"]
    assert judged["kept"] == (judged["saved_low"] > 0 and judged["learned"]["converged"] >= judged["ddim"]["converged"])
    assert judged["saved_low"] <= judged["saved"] and abs(judged["saved"] - (judged["ddim"]["cost"] -
                                                                            judged["learned"]["cost"])) < 0.02
    assert info["steps"] == ([1] if judged["kept"] else [])
    assert "step 2 val solves" in shown and "learned steps" in shown
    assert f"python -m preciseinv.fit sampler=ddim num_steps=2 init=learned init.path={out}" in shown  # embedded model
    logged = (out / "logs" / "version_1" / "metrics.csv").read_text().splitlines()
    header = logged[0].split(",")
    epochs = [int(float(row.split(",")[header.index("epoch")])) for row in logged[1:]]
    assert min(epochs) >= epoch + 1  # it went on from the checkpoint, not from the start


def test_ctrl_c_during_training_is_one_line_and_exit_130(trained, tmp_path):
    root, _ = trained
    out = tmp_path / "predictor"
    proc = command("learn_init", f"runs=[{root / 'run'}]", f"output_dir={out}", "trainer.max_epochs=50",
                   "data.batch_size=8", "callbacks.early_stopping.patience=100", "trainer.enable_progress_bar=false")
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last.ckpt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == ("preciseinv: interrupted; the last epoch's checkpoint is kept: rerun the "
                                            "same command to resume the training")
    assert "Traceback" not in err and not (out / "predictor.json").exists()


def test_a_noise_injecting_samplers_step_is_solved_as_the_run_solved_it(fit_in_process, tmp_path):
    """What learn_init trains on and judges by is the run's own subproblem: with sampler=ddpm (whose step adds
    noise z, started from the state below's eps* and solved with it), solving a stored step again from its DDIM
    start takes the iterations the run took."""
    from preciseinv.datamodules.inversions import build_pairs
    from preciseinv.inits.base import injected_noise
    from preciseinv.api import Inverter

    export_crops(tmp_path / "images", 8, seed=104)
    fit_in_process("data=folder", f"data.root={tmp_path / 'images'}", f"output_dir={tmp_path / 'run'}", "~logger",
                   "lpips=false", "sampler=ddpm", "data.batch_size=8")
    scan = scan_runs([tmp_path / "run"])
    pairs = build_pairs(scan, "cpu")
    records = {r["source_file"]["sha256"]: r for r in  # pairs name an image by its file's checksum
               map(json.loads, (tmp_path / "run" / "manifest.jsonl").read_text().splitlines())}
    engine = Inverter("mini", sampler="ddpm", device="cpu").engine
    sampler, denoiser = engine.sampler, engine.model.predict
    rows = (pairs["k"] == 1).nonzero().squeeze(1)
    x0, x_prev = pairs["x0"][rows], pairs["x_prev"][rows]
    _, stats = engine.method.solve(denoiser, sampler, x0, x_prev, 1, sampler.state(x0, pairs["eps_ddim"][rows], 1),
                                   None, injected_noise(sampler, x0, x_prev, 1))
    ran = [records[pairs["images"][int(i)]]["iters"][1] for i in pairs["image"][rows]]
    assert sampler.injects_noise and sampler.learn_noise
    # (starting z at the stored, solved noise instead: 5 iterations off over these 8)
    assert sum(abs(a - b) for a, b in zip(stats.iters.tolist(), ran)) <= 2, (stats.iters.tolist(), ran)


def test_the_closing_table_says_which_epoch_each_figure_is_of():
    """The predictor kept is the best epoch's; "learned better" is measured on the last: each row says which."""
    from preciseinv.learn_init import summary_table

    info = {"trained": {"images": 48, "val_images": 5, "train_pairs": 86, "val_pairs": 5, "epochs": 20,
                        "best_val_residual": 0.084, "seconds": 70.0,
                        "last": {"val/residual_ddim": 0.117, "val/learned_better": 0.8}},
            "judged": {"1": {"pairs": 5, "ddim": {"cost": 61.2, "converged": 1.0},
                             "learned": {"cost": 79.2, "converged": 1.0}, "saved": -18.0, "saved_low": -35.5,
                             "kept": False}}, "steps": []}
    table = summary_table(info)
    assert "val residual, best epoch" in table and "8.400e-02" in table
    assert "learned better, last epoch" in table and "80%" in table
    assert "cost 61.2 -> 79.2" in table and "DDIM start kept" in table and "none: init=learned is init=ddim" in table


def test_the_closing_hint_is_the_fit_command_of_the_model_and_steps_it_was_trained_for():
    from preciseinv.learn_init import fit_command

    info = {"identity": {"source": "/models/my sd", "timesteps": [1.0, 251.0, 501.0, 751.0], "sampler": "ddpm",
                         "lora": {"lora": "/loras/style.safetensors", "lora_scale": 0.8}}}
    assert fit_command(info, "runs/init") == ("python -m preciseinv.fit model.path='/models/my sd' "
                                              "model.lora=/loras/style.safetensors model.lora_scale=0.8 sampler=ddpm "
                                              "num_steps=4 init=learned init.path=runs/init")
