"""The benchmark scripts run (tiny settings): their tables are what docs/benchmarks.md records."""

import importlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def run(*args) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture
def script(monkeypatch, capsys):
    """``script(name, *args)``: ``main()`` of benchmarks/<name>.py with those arguments, in this process (its
    argument parsing, runs and table as from the command line, without a new interpreter's start-up); returns what
    it printed. Scripts whose point is a fresh process (gpu_check.sh, compile_time.py) run as subprocesses."""
    import torch

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.chdir(ROOT)
    threads = torch.get_num_threads()  # --threads sets this process's

    def call(name: str, *args) -> str:
        module = importlib.import_module(name)
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *map(str, args)])
        capsys.readouterr()
        module.main()
        return capsys.readouterr().out

    yield call
    torch.set_num_threads(threads)


def test_solver_benchmark_prints_its_table(tmp_path, script):
    out = script("solvers", "--models", "mini", "--spacing", "default", "--solvers", "ddim", "hybrid",
                 "--random", "0", "--max-iters", "20", "--threads", "1", "--out", str(tmp_path / "rows.jsonl"))
    rows = [line for line in out.splitlines() if line.startswith("| mini |")]
    assert len(rows) == 2 and "| hybrid |" in rows[1]
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 2


def test_solver_benchmark_runs_a_variant_named_with_its_settings(tmp_path, script):
    """--solvers NAME@KEY=VALUE sets the solver's config: a hybrid whose only phase is spectral takes spectral's
    iterates (same rows); the row names the whole spec; a setting the solver lacks is a one-line error."""
    import json

    rows = tmp_path / "rows.jsonl"
    script("solvers", "--models", "mini", "--spacing", "default", "--solvers", "spectral",
           "hybrid@phases=[spectral]", "--random", "0", "--max-iters", "20", "--threads", "1", "--out", str(rows))
    plain, variant = [json.loads(line) for line in rows.read_text().splitlines()]
    assert variant["solver"] == "hybrid@phases=[spectral]" and variant["model"] == "mini"
    assert (variant["cost"], variant["converged"], variant["psnr"]) == \
        (plain["cost"], plain["converged"], plain["psnr"])
    with pytest.raises(SystemExit, match="solver=hybrid has no setting nope"):  # its one line on stderr
        script("solvers", "--models", "mini", "--solvers", "hybrid@nope=1", "--max-iters", "2")


def test_solver_suite_draws_other_crops_and_resumes_per_crop_seed(tmp_path, script):
    """--crop-seed draws other images (to tune on the trained models); a rerun with --out runs only what is new,
    in a file that also holds other tables' rows (benchmarks/results.jsonl does)."""
    import json

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"kind": "iteration", "model": "mini", "solver": "adamw"}) + "\n")
    common = ("solvers", "--suite", "mini-leading", "--solvers", "spectral", "--eta", "1e-3",
              "--crops", "2", "--max-iters", "20", "--threads", "1", "--out", str(rows))
    script(*common)
    script(*common, "--crop-seed", "1")
    first = [json.loads(line) for line in rows.read_text().splitlines()][1:]
    assert [r["crop_seed"] for r in first] == [0, 1] and first[0]["psnr"] != first[1]["psnr"]
    assert {r["kind"] for r in first} == {"solver_suite"}
    out = script(*common, "--crop-seed", "1")  # already there: read back, not run again
    assert len(rows.read_text().splitlines()) == 3 and "| mini-leading |" not in out
    out = script(*common, "--crop-seed", "1", "--num-steps", "3")  # another T is another row
    last = json.loads(rows.read_text().splitlines()[-1])
    assert len(rows.read_text().splitlines()) == 4 and len(last["timesteps"]) == 3 and "| mini-leading |" in out


def test_gpu_check_runs_small_on_a_cpu(tmp_path):
    """benchmarks/gpu_check.sh is what a GPU machine runs; here it runs its smallest form and appends its rows."""
    import json
    import os

    env = {**os.environ, "PYTHON": sys.executable, "PRECISION": "fp32", "ITERS": "1", "GPU_TESTS": "0",
           "STEPS": "fit|mini|12|data.batch_size=4 method.max_iters=20 method.eta=0.05\nspeed|mini|1|--solver adamw fixed_point --no-autocast",
           "RESULTS": str(tmp_path / "results.jsonl"), "OUT": str(tmp_path / "out")}
    (tmp_path / "out").mkdir()
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert (tmp_path / "out" / "results.jsonl").read_text() == (tmp_path / "results.jsonl").read_text()
    assert [(r["kind"], r["solver"]) for r in rows] == [("fit", "hybrid"), ("iteration", "adamw"),
                                                        ("iteration", "fixed_point"), ("end_to_end", "adamw")]
    for row in rows:
        for key in ("date", "device", "model", "resolution", "batch", "precision", "compile", "solver",
                    "ms_per_image_iteration", "images_per_second", "peak_memory_mb"):
            assert key in row
    fit = rows[0]  # the end-to-end run of python -m preciseinv.fit, its steady images per second
    assert fit["batch"] == 4 and fit["images_per_second"] > 0 and fit["overrides"][0] == "data.batch_size=4"
    assert fit["rate"] == "steady" and fit["images_per_second"] == fit["steady_images_per_second"]  # one run
    assert fit["batches"] == 3 and fit["ranks"] == 1
    assert fit["precision"] == "32-true" and fit["dtype"] == "float32"
    assert fit["psnr_mean"] is not None and fit["cost_mean"] > 0 and fit["eta"] == 0.05  # the run's own
    assert all(row["autocast"] is False for row in rows[1:])  # speed.py --no-autocast
    assert all(row["warmup_seconds"] > 0 for row in rows[1:3])  # the warm-up (and a compile) timed apart


def test_gpu_check_starts_no_step_past_its_deadline(tmp_path):
    """DEADLINE: the script ends by itself (its log whole) rather than being killed at its time limit."""
    import os

    env = {**os.environ, "PYTHON": sys.executable, "GPU_TESTS": "0", "DEADLINE": "10",
           "STEPS": "speed|mini|1|\nfit|mini|4|", "RESULTS": str(tmp_path / "results.jsonl")}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deadline (10s) reached: skipping the remaining steps from speed mini" in proc.stdout
    assert not (tmp_path / "results.jsonl").exists()


def test_speed_halves_a_batch_that_does_not_fit(monkeypatch, capsys):
    """speed.py measures each solver up to the largest batch that fits: out of memory at a size, it tries half of
    it, down to the last size that fitted (the timing stubbed to run out of memory above 10 samples)."""
    import torch

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import speed

    def time_iterations(model, batch, *args):
        if batch > 10:
            raise torch.OutOfMemoryError("stub")
        return 1e-3, 0.5

    monkeypatch.setattr(speed, "time_iterations", time_iterations)
    monkeypatch.setattr(sys, "argv", ["speed.py", "--model", "mini", "--batch", "16", "4", "--solver", "adamw",
                                     "--no-end-to-end"])
    speed.main()
    rows = [line.split("|")[7:9] for line in capsys.readouterr().out.splitlines() if line.startswith("| mini |")]
    assert [(b.strip(), ms.strip()) for b, ms in rows] == [("4", "1.00"), ("16", "out of memory"), ("8", "1.00")]


def test_speed_times_the_default_solver_in_each_of_its_phases(monkeypatch):
    """speed.py's hybrid entries are the default solver as configured: `hybrid_fixed_point` is held in the fixed-point
    phase with configs/solver/hybrid.yaml's step and momentum, `hybrid_lbfgs` in its gradient phase (the default's
    last); each times on the embedded model."""
    import math

    import torch
    import yaml

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import speed
    from preciseinv.methods import NoiseSubproblem
    from preciseinv.solvers import LBFGS, FixedPoint

    cfg = yaml.safe_load((ROOT / "configs" / "solver" / "hybrid.yaml").read_text())
    model = speed.build("mini", torch.device("cpu"), torch.float32)
    x0 = torch.randn(2, *model.latent_shape)
    problem = NoiseSubproblem(model.sampler(), model.predict, 1, x0, x0, torch.randn_like(x0), model.condition(2))
    (phase,) = speed.SOLVERS["hybrid_fixed_point"](problem).rules
    assert isinstance(phase, FixedPoint) and (phase.damping, phase.momentum) == (cfg["damping"], cfg["momentum"])
    (gradient,) = speed.SOLVERS["hybrid_lbfgs"](problem).rules
    assert isinstance(gradient, LBFGS) and speed.SOLVERS["hybrid"](problem).phases == tuple(cfg["phases"])
    assert cfg["phases"][-1] == "lbfgs"
    for solver in ("hybrid", "hybrid_fixed_point", "hybrid_lbfgs"):
        ms, _ = speed.time_iterations(model, 2, 1, torch.device("cpu"), "fp32", solver)
        assert math.isfinite(ms) and ms > 0


def test_fit_rows_name_the_precision_the_user_chose(monkeypatch):
    """fit runs trainer.precision=bf16-true as Lightning's 32-true with bf16 weights: the row says bf16-true."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from throughput import precision_name

    def run(precision, dtype):
        return {"trainer": {"precision": precision}, "model": {"dtype": dtype}}

    assert precision_name(run("32-true", "bfloat16")) == "bf16-true"
    assert precision_name(run("32-true", "float16")) == "16-true"
    assert precision_name(run("32-true", "float32")) == "32-true"
    assert precision_name(run("16-mixed", "float32")) == "16-mixed"


def test_the_random_pipeline_is_sd15_shaped(monkeypatch):
    """benchmarks/random_pipeline.py builds SD1.5's three networks at their real sizes (made on the meta device:
    shapes only): the parameter counts of runwayml's UNet, VAE and CLIP ViT-L/14 text encoder."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from random_pipeline import random_sd15

    pipe = random_sd15("meta")
    counts = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("unet", "vae", "text_encoder")}
    assert counts == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    assert pipe.unet.config.cross_attention_dim == 768 and pipe.unet.config.sample_size == 64
    assert pipe.vae.config.sample_size == 512 and pipe.scheduler.config.beta_schedule == "scaled_linear"


def test_compile_time_runs_each_scope_in_a_fresh_process(tmp_path):
    """benchmarks/compile_time.py: one child process a scope (a cold compile cache each), a row each; the eager
    scope here (the inductor scopes build C++ kernels for minutes on a CPU: their figures are in
    docs/benchmarks.md)."""
    import json

    out = run("benchmarks/compile_time.py", "--model", "mini", "--scopes", "eager", "--threads", "1", "--out",
              str(tmp_path / "rows.jsonl"))
    assert "| eager | " in out and "cold cache" in out
    (row,) = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert row["kind"] == "compile" and row["model"] == "mini" and row["compile"] is False
    assert row["batch"] == 3 and row["shrunk_batch"] == 2 and row["graphs"] == 0
    assert row["gradient_first_s"] > 0 and row["forward_steady_s"] > 0 and row["compile_seconds"] >= 0


def test_learned_start_benchmark_prints_its_table(tmp_path, script, monkeypatch):
    """Its five commands (fit, learn_init, three fits) run in this process, each on the config the command would
    compose from the same arguments."""
    import json

    from preciseinv.presets import compose

    def command(module: str, *args: str) -> float:
        start = time.perf_counter()
        importlib.import_module(f"preciseinv.{module}").run(compose(module, list(args)))
        return time.perf_counter() - start

    monkeypatch.setattr(importlib.import_module("learn_init"), "command", command)  # script put benchmarks/ on the path
    out = script("learn_init", "--models", "mini", "--train", "8", "--test", "1", "--eta", "1e-2", "--out",
                 str(tmp_path / "runs"), "--jsonl", str(tmp_path / "rows.jsonl"), "--set", "solver.damping=1",
                 "--learn-set", "trainer.max_epochs=3")
    rows = [line for line in out.splitlines() if line.startswith("| mini |")]
    assert len(rows) == 3 and "| ddim |" in rows[0] and "| learned |" in rows[1] and "| learned, every step |" in rows[2]
    records = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["init"] for r in records] == ["ddim", "learned", "learned, every step"]
    assert all(r["overrides"] == ["solver.damping=1"] for r in records)  # every fit ran with the override
    assert all(r["learn_overrides"] == ["trainer.max_epochs=3"] for r in records)
    trained = json.loads((tmp_path / "runs" / "mini" / "learn_init" / "predictor.json").read_text())["trained"]
    assert 1 <= trained["epochs"] <= 3, trained  # learn_init ran with its override (60 epochs by default)
    fitted = json.loads((tmp_path / "runs" / "mini" / "fit-train" / "summary.json").read_text())
    assert fitted["config"]["method"]["solver"]["damping"] == 1
    assert "mini: cost ratio" in out and "mini: step 2, held-out solves in learn_init: cost" in out


def test_jacobian_benchmark_prints_the_spectrum(tmp_path, script):
    """benchmarks/jacobian.py builds a sample's full Jacobian at the end of its solve (16 px: 768 elements) and
    prints its spectrum; a larger Krylov space never leaves more of the residual."""
    out = script("jacobian", "--suite", "pixel-s-0", "--crops", "2", "--index", "0", "1", "--step", "1",
                 "--scratch", str(tmp_path))
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| pixel-s-0 |")]
    assert [(r[1], r[2], r[3]) for r in rows] == [("500", "0", "768"), ("500", "1", "768")]
    for r in rows:
        low, mid, high = map(float, r[5].split(", "))
        assert low <= mid <= high <= float(r[6]) and int(r[8]) >= 0
        left = [float(v) for v in r[9].rstrip(" |").split(", ")]
        assert all(b <= a + 1e-9 for a, b in zip(left, left[1:])) and left[0] <= 1.0
