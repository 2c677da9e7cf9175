"""python -m preciseinv.report: run folders in, the paper-style table, CSVs and plots out; unfinished runs listed
apart, bad folders skipped."""

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from preciseinv import report as report_module
from preciseinv.callbacks.writer import summarize
from preciseinv.report import CELL_INCHES, DPI, METHOD_COLOURS, TAB10, mean_ci95, method_colour, report

TARGETS = {"preciseinv": "PreciseInv", "ddim": "DDIMInversion", "belm": "BELM", "edict": "EDICT"}


def fake_run(folder: Path, method: str, psnrs: list[float], solver: str | None = "Hybrid", eta=1e-3,
             edit: dict | None = None, complete: bool | None = True, init: str | None = None,
             sampler: str | None = None, retry: str | None = None, max_iters: int = 200) -> None:
    """A run folder as fit (or edit, with ``edit`` metrics per record) writes it: manifest records and the summary
    computed from them (``complete=None``: a summary written before it said whether the run finished)."""
    folder.mkdir(parents=True)
    records = [{"id": f"im{i}", "psnr": p, "ssim": 0.9, "lpips": None, "latent_mse": 1e-4, "seconds": 0.5,
                "converged": [True, True], "nfe_forward": 10, "nfe_backward": 2, "phase": ["init", "anderson"],
                "peak_memory_mb": 100.0, **(edit or {})} for i, p in enumerate(psnrs)]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = {"model": {"name": "mini"}, "num_steps": 2, "sampler": sampler,
              "method": {"_target_": f"preciseinv.methods.{TARGETS[method]}", "eta": eta, "max_iters": max_iters,
                         **({"solver": {"_target_": f"preciseinv.solvers.{solver}"}} if solver else {}),
                         **({"retry": {"_target_": f"preciseinv.solvers.{retry}"}} if retry else {})},
              **({"init": {"_target_": f"preciseinv.inits.{init}"}} if init else {})}
    summary = summarize(records, [], config, complete=bool(complete))
    if complete is None:
        del summary["complete"]
    (folder / "summary.json").write_text(json.dumps(summary))


def md_rows(root: Path) -> dict[str, list[str]]:
    """report.md's main table: run -> its cells."""
    lines = (root / "report.md").read_text().split("\n\n")[2].splitlines()[2:]
    return {cells[-1]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}


def test_mean_and_95_percent_interval():
    mean, ci = mean_ci95([1.0, 2.0, 3.0, None, float("nan")])
    assert mean == 2.0 and math.isclose(ci, 4.303 * 1.0 / math.sqrt(3), rel_tol=1e-6)
    assert mean_ci95([5.0]) == (5.0, None) and mean_ci95([None]) == (None, None)


def test_report_rows_files_and_skipped_folders(tmp_path):
    fake_run(tmp_path / "sweep" / "method=preciseinv", "preciseinv", [30.0, 32.0, 34.0])
    fake_run(tmp_path / "sweep" / "method=ddim", "ddim", [12.0, 14.0], solver=None)
    fake_run(tmp_path / "deep" / "er" / "eta=1e-5", "preciseinv", [40.0, 40.0], eta=1e-5)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    (tmp_path / "broken" / "manifest.jsonl").write_text("")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "manifest.jsonl").write_text('{"id": "x"}\n')  # died before its summary
    out = report(tmp_path)
    assert out["runs"] == 3 and len(out["skipped"]) == 1 and out["unfinished"] == [("unfinished", "1")]
    rows = {r["run"]: r for r in csv.DictReader(open(tmp_path / "report.csv"))}
    assert set(rows) == {"sweep/method=preciseinv", "sweep/method=ddim", "deep/er/eta=1e-5"}
    precise = rows["sweep/method=preciseinv"]
    assert precise["method"] == "preciseinv" and precise["solver"] == "hybrid" and precise["n"] == "3"
    assert float(precise["psnr_mean"]) == 32.0 and float(precise["cost_mean"]) == 14.0
    assert rows["sweep/method=ddim"]["method"] == "ddim" and rows["sweep/method=ddim"]["solver"] == ""
    assert len(list(csv.DictReader(open(tmp_path / "per_image.csv")))) == 7
    text = (tmp_path / "report.md").read_text()
    assert "32.00 ± " in text and "## Skipped" in text and "broken" in text
    assert "## Unfinished" in text and "- `unfinished`: images done: 1" in text
    for name in ("psnr_vs_seconds.png", "psnr_vs_eta.png", "cost_vs_images.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "## Editing" not in text and precise["bg_psnr_mean"] == ""


def test_runs_that_differ_in_their_start_alone_are_told_apart(tmp_path):
    """A sweep over init=ddim,learned: each row and plot label says where the solver started (a run written before
    runs recorded it started from DDIM's; a method without a solver has no start)."""
    fake_run(tmp_path / "0", "preciseinv", [30.0, 31.0], init="DDIMStart")
    fake_run(tmp_path / "1", "preciseinv", [30.0, 31.0], init="LearnedStart")
    fake_run(tmp_path / "2", "preciseinv", [30.0, 31.0], eta=1e-5, init="LearnedStart")
    fake_run(tmp_path / "old", "preciseinv", [30.0, 31.0])
    fake_run(tmp_path / "ddim", "ddim", [20.0, 21.0], solver=None, init="DDIMStart")
    report(tmp_path)
    rows = {r["run"]: r["init"] for r in csv.DictReader(open(tmp_path / "report.csv"))}
    assert rows == {"0": "ddim", "1": "learned", "2": "learned", "old": "ddim", "ddim": ""}
    table = md_rows(tmp_path)
    assert table["1"][5] == "learned" and table["0"][5] == "ddim" and table["ddim"][5] == ""
    labels = {r: report_module.label(run) for r, run in
              ((r, report_module.read_run(tmp_path / r)["row"]) for r in ("0", "1"))}
    assert labels == {"0": "preciseinv/hybrid T=2 η=0.001", "1": "preciseinv/hybrid from learned T=2 η=0.001"}


def test_runs_that_differ_in_their_retry_alone_are_told_apart(tmp_path):
    """A run with retry=spectral and one without: report.csv's retry column, the solver cell, the plot labels."""
    fake_run(tmp_path / "off", "preciseinv", [30.0, 31.0])
    fake_run(tmp_path / "on", "preciseinv", [30.5, 31.0], retry="Spectral")
    report(tmp_path)
    retries = {r["run"]: r["retry"] for r in csv.DictReader(open(tmp_path / "report.csv"))}
    assert retries == {"off": "", "on": "spectral"}
    table = md_rows(tmp_path)
    assert table["off"][4] == "hybrid" and table["on"][4] == "hybrid + retry spectral"
    assert report_module.label(report_module.read_run(tmp_path / "on")["row"]) == (
        "preciseinv/hybrid + retry spectral T=2 η=0.001")
    records = [json.loads(line) for line in (tmp_path / "off" / "manifest.jsonl").read_text().splitlines()]
    (tmp_path / "off" / "manifest.jsonl").write_text("".join(json.dumps({**r, "retry": "spectral"}) + "\n"
                                                             for r in records))
    assert report_module.read_run(tmp_path / "off")["row"]["retry"] == "spectral"  # the records say so, not the
    #                                                                                 config of a later rerun


def test_edit_runs_get_the_editing_table(tmp_path):
    metrics = {"bg_psnr": 28.0, "bg_mse": 0.002, "bg_ssim": 0.9, "bg_lpips": None, "clip_whole": 25.0,
               "clip_edited": 21.5, "structure_distance": 0.01}
    fake_run(tmp_path / "pie" / "preciseinv", "preciseinv", [30.0, 32.0], edit=metrics)
    fake_run(tmp_path / "pie" / "ddim", "ddim", [20.0, 22.0], solver=None, edit={**metrics, "bg_psnr": 20.0})
    report(tmp_path)
    rows = {r["run"]: r for r in csv.DictReader(open(tmp_path / "report.csv"))}
    assert float(rows["pie/preciseinv"]["bg_psnr_mean"]) == 28.0 and float(rows["pie/ddim"]["bg_psnr_mean"]) == 20.0
    assert float(rows["pie/preciseinv"]["clip_edited_mean"]) == 21.5
    text = (tmp_path / "report.md").read_text()
    assert "## Editing (PIE-Bench)" in text and "| 28.00 ± 0.00 |" in text and "| 20.00 ± 0.00 |" in text


@pytest.mark.slow
def test_multirun_sweep_then_report(tmp_path):
    """Hydra's --multirun: one folder per run; the report reads them all (ceiling exact on the pixel model, and
    the ordering of the paper's Table 3 on the embedded model: DDIM inversion < ReNoise < PreciseInv)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "preciseinv.fit", "--multirun", "method=ddim,ceiling,renoise",
                           "num_steps=2", "~logger", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in sweep.iterdir() if p.is_dir()} == {
        "method=ddim,num_steps=2", "method=ceiling,num_steps=2", "method=renoise,num_steps=2"}
    proc = subprocess.run([sys.executable, "-m", "preciseinv.report", str(sweep)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "3 runs, 0 skipped" in proc.stdout, proc.stderr[-2000:]
    psnr = {r["method"]: float(r["psnr_mean"]) for r in csv.DictReader(open(sweep / "report.csv"))}
    assert set(psnr) == {"ddim", "ceiling", "renoise"} and psnr["ceiling"] >= 100
    assert psnr["ddim"] + 5 < psnr["renoise"] < 37.0  # 12.2 and 22.5 dB measured; PreciseInv: 37.5
    assert (sweep / "grid.png").stat().st_size > 0


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, fit_in_process):
    """Three tiny runs of the embedded model on the four bundled photos, as a sweep folder: DDIM inversion and the
    ceiling (exact on this pixel model) to their end, PreciseInv stopped by a Ctrl-C after its first image."""
    from preciseinv import preemption
    from preciseinv.callbacks.writer import InversionWriter

    sweep = tmp_path_factory.mktemp("sweep")
    for method in ("ddim", "ceiling"):
        fit_in_process(f"method={method}", "~logger", "lpips=false", f"output_dir={sweep / method}")
    write = InversionWriter.write_on_batch_end

    def write_then_ctrl_c(self, *args, **kwargs):
        write(self, *args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # the run stops at the start of its next batch

    with pytest.MonkeyPatch.context() as patch, pytest.raises(preemption.Interrupted):
        patch.setattr(InversionWriter, "write_on_batch_end", write_then_ctrl_c)
        fit_in_process("solver=fixed_point", "method.max_iters=40", "data.batch_size=1", "~logger", "lpips=false",
                       f"output_dir={sweep / 'preciseinv'}")
    return sweep


def test_summary_says_whether_the_run_finished(real_runs):
    summary = {m: json.loads((real_runs / m / "summary.json").read_text()) for m in ("ddim", "ceiling", "preciseinv")}
    assert summary["ddim"]["complete"] is True and summary["ddim"]["n"] == 4
    assert summary["ceiling"]["complete"] is True
    assert summary["preciseinv"]["complete"] is False and summary["preciseinv"]["n"] == 1
    assert summary["preciseinv"]["n_total"] == 4 and "n_total" not in summary["ddim"]


def test_an_interrupted_run_is_listed_below_the_tables_not_in_them(real_runs):
    out = report(real_runs)
    assert out["runs"] == 2 and out["unfinished"] == [("preciseinv", "1 of 4")] and not out["skipped"]
    assert {r["run"] for r in csv.DictReader(open(real_runs / "report.csv"))} == {"ddim", "ceiling"}
    per_image = list(csv.DictReader(open(real_runs / "per_image.csv")))
    assert {r["run"] for r in per_image} == {"ddim", "ceiling"}
    # converged: blank for the exact method (as report.md says), False for DDIM inversion's residual above eta
    assert {(r["run"], r["converged"]) for r in per_image} == {("ceiling", ""), ("ddim", "False")}
    assert set(md_rows(real_runs)) == {"ddim", "ceiling"}
    unfinished = (real_runs / "report.md").read_text().split("## Unfinished")[1]
    assert "- `preciseinv` (preciseinv/fixed_point T=2 η=0.001): images done: 1 of 4" in unfinished


def test_an_exact_method_reads_exact_with_blank_columns_that_do_not_apply(real_runs, tmp_path):
    """The ceiling on the pixel model (a real run) and BELM (exact by construction): PSNR `exact`, no η, solver or
    converged fraction; DDIM inversion keeps its measured PSNR and converged fraction, and the η it is measured
    against."""
    report(real_runs)
    cells = md_rows(real_runs)  # method model T η solver start n PSNR SSIM LPIPS s/image cost peak converged run
    assert cells["ceiling"][:8] == ["ceiling", "mini", "2", "", "", "", "4", "exact"] and cells["ceiling"][13] == ""
    assert cells["ddim"][3:6] == ["0.001", "", ""] and "±" in cells["ddim"][7] and cells["ddim"][13] == "0.00"
    ceiling = next(r for r in csv.DictReader(open(real_runs / "report.csv")) if r["method"] == "ceiling")
    assert ceiling["exact"] == "True" and ceiling["converged_fraction"] == ceiling["eta"] == ""
    fake_run(tmp_path / "belm", "belm", [120.0, 120.0], solver=None)
    fake_run(tmp_path / "edict", "edict", [102.2, 109.3], solver=None)  # float rounding over more steps: still exact
    fake_run(tmp_path / "bdia", "belm", [31.0, 33.0], solver=None)  # bounded, as through a latent model's autoencoder
    report(tmp_path)
    assert md_rows(tmp_path)["belm"][:8] == ["belm", "mini", "2", "", "", "", "2", "exact"]
    assert md_rows(tmp_path)["belm"][13] == "" and "120.00" not in (tmp_path / "report.md").read_text()
    assert md_rows(tmp_path)["edict"][7] == "exact" and md_rows(tmp_path)["bdia"][7].startswith("32.00")


def test_the_model_column_names_what_loaded_beside_its_preset(tmp_path):
    fake_run(tmp_path / "a", "ddim", [20.0, 21.0], solver=None)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    summary["config"]["model"] = {"name": "sd14", "path": "/models/my-sd"}  # model=sd14 model.path=/models/my-sd
    (tmp_path / "a" / "summary.json").write_text(json.dumps(summary))
    fake_run(tmp_path / "b", "ddim", [20.0, 21.0], solver=None)
    summary["config"]["model"] = {"name": "sd14", "path": "CompVis/stable-diffusion-v1-4"}  # model=sd14: its own
    (tmp_path / "b" / "summary.json").write_text(json.dumps(summary))
    report(tmp_path)
    assert md_rows(tmp_path)["a"][1] == "sd14 (/models/my-sd)" and md_rows(tmp_path)["b"][1] == "sd14"


def test_grid_has_the_inputs_as_its_first_row(real_runs):
    import numpy as np

    report(real_runs)
    grid = Image.open(real_runs / "grid.png")  # 4 images; rows: the inputs, ddim, ceiling
    assert grid.size == (round(4 * CELL_INCHES * DPI), round(3 * CELL_INCHES * DPI))
    top = np.asarray(grid.convert("RGB"))[: grid.height // 3].astype(int)
    assert (top.sum(-1) < 700).mean() > 0.5  # the four photos, not "input not found" on white


def test_a_method_has_one_colour_in_every_plot(tmp_path, monkeypatch):
    from matplotlib.colors import to_hex

    assert method_colour("preciseinv") == METHOD_COLOURS["preciseinv"]
    assert len(set(METHOD_COLOURS.values())) == len(METHOD_COLOURS)  # no two known methods alike
    assert method_colour("newmethod") == method_colour("newmethod") in TAB10  # by the name alone
    fake_run(tmp_path / "hybrid-3", "preciseinv", [30.0, 31.0], eta=1e-3)
    fake_run(tmp_path / "hybrid-5", "preciseinv", [40.0, 41.0], eta=1e-5)
    fake_run(tmp_path / "adamw-5", "preciseinv", [35.0, 36.0], solver="AdamW", eta=1e-5)
    fake_run(tmp_path / "ddim", "ddim", [12.0, 13.0], solver=None)
    drawn: dict[str, dict[str, set]] = {}  # plot -> method -> colours
    markers: dict[str, list] = {}  # plot -> the legend's markers
    save = report_module._save

    def spy(fig, ax, path, plt):
        markers[path.name] = [h.get_marker() if hasattr(h, "get_marker") else h.get_paths()[0]
                              for h in ax.get_legend_handles_labels()[0]]
        for handle, text in zip(*ax.get_legend_handles_labels()):
            colour = handle.get_color() if hasattr(handle, "get_marker") else handle.get_facecolor()[0]
            drawn.setdefault(path.name, {}).setdefault(text.split("/")[0].split()[0], set()).add(to_hex(colour))
        return save(fig, ax, path, plt)

    monkeypatch.setattr(report_module, "_save", spy)
    report(tmp_path)
    assert drawn["psnr_vs_seconds.png"] == {"preciseinv": {METHOD_COLOURS["preciseinv"]},
                                            "ddim": {METHOD_COLOURS["ddim"]}}
    assert drawn["psnr_vs_eta.png"] == {"preciseinv": {METHOD_COLOURS["preciseinv"]}}  # ddim has no η to vary
    assert drawn["cost_vs_images.png"] == {"preciseinv": {METHOD_COLOURS["preciseinv"]}}  # ddim's cost is fixed
    assert len(set(markers["cost_vs_images.png"])) == 3  # one method's three runs: told apart by their markers


def test_runs_written_before_summary_said_are_judged_from_their_files(tmp_path):
    """No ``complete`` key: run.json's last_run (written at the end) makes a run finished, rank files left behind
    make it unfinished, nothing either way leaves it in the table as not known; a run killed before its summary is
    unfinished with what it published."""
    fake_run(tmp_path / "ended", "ddim", [12.0, 13.0], solver=None, complete=None)
    (tmp_path / "ended" / "run.json").write_text(json.dumps({"last_run": {"images": 2}}))
    fake_run(tmp_path / "stopped", "ddim", [12.0], solver=None, complete=None)
    (tmp_path / "stopped" / "records").mkdir()
    (tmp_path / "stopped" / "records" / "rank-0.jsonl").write_text('{"id": "im0"}\n')
    fake_run(tmp_path / "older", "ddim", [12.0, 13.0], solver=None, complete=None)
    (tmp_path / "killed" / "records").mkdir(parents=True)
    (tmp_path / "killed" / "run.json").write_text(json.dumps({"method": {"_target_": "preciseinv.methods.PreciseInv"}}))
    (tmp_path / "killed" / "records" / "rank-0.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    out = report(tmp_path)
    assert set(md_rows(tmp_path)) == {"ended", "older"}
    assert sorted(out["unfinished"]) == [("killed", "2"), ("stopped", "1")]
    text = (tmp_path / "report.md").read_text()
    assert "Not known to have finished (written before summary.json said): `older`." in text


def test_a_folder_without_runs_is_one_line_and_exit_2(tmp_path, capsys):
    from preciseinv.report import main

    with pytest.raises(SystemExit) as exit_status:
        main([str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_status.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"preciseinv: error: no runs in {str(tmp_path)!r}")
    assert not (tmp_path / "report.md").exists()


@pytest.mark.parametrize("args,said", [([], "got none"), (["a", "b"], "got 2: a b")])
def test_no_folder_or_two_is_one_line_and_exit_2(args, said, capsys):
    from preciseinv.report import main

    with pytest.raises(SystemExit) as exit_status:
        main(args)
    err = capsys.readouterr().err
    assert exit_status.value.code == 2 and err.count("\n") == 1
    assert err.startswith("preciseinv: error: give one folder, the runs' parent: python -m preciseinv.report DIR")
    assert said in err


def test_plots_these_runs_give_none_of_do_not_stay_from_an_earlier_report(real_runs, tmp_path):
    """Two finished runs that share no image: no grid.png (nor an eta curve: neither has a solver), and the ones an
    earlier report left in the folder go, rather than standing for these runs."""
    import shutil

    for name, keep in (("ddim", {"astronaut", "chelsea"}), ("ceiling", {"coffee", "rocket"})):
        shutil.copytree(real_runs / name, tmp_path / name)
        manifest = tmp_path / name / "manifest.jsonl"
        lines = [line for line in manifest.read_text().splitlines() if json.loads(line)["id"] in keep]
        manifest.write_text("\n".join(lines) + "\n")
    for stale in ("grid.png", "psnr_vs_eta.png"):
        (tmp_path / stale).write_bytes(b"an earlier report's")
    out = report(tmp_path)
    assert out["runs"] == 2 and not any(Path(f).name in ("grid.png", "psnr_vs_eta.png") for f in out["files"])
    assert not (tmp_path / "grid.png").exists() and not (tmp_path / "psnr_vs_eta.png").exists()
    assert (tmp_path / "psnr_vs_seconds.png").is_file()


def test_each_run_names_its_sampler(tmp_path):
    """A run with another sampler (sampler=lcm) is told apart from the default's in both tables; auto: the model's
    own."""
    fake_run(tmp_path / "own", "preciseinv", [30.0, 31.0])
    fake_run(tmp_path / "lcm", "preciseinv", [20.0, 21.0], sampler="lcm")
    report(tmp_path)
    assert md_rows(tmp_path)["lcm"][-2] == "lcm" and md_rows(tmp_path)["own"][-2] == "auto"
    assert {r["run"]: r["sampler"] for r in csv.DictReader(open(tmp_path / "report.csv"))} == {"own": "auto",
                                                                                             "lcm": "lcm"}


def test_a_metric_some_samples_lack_has_no_mean_and_one_eta_draws_no_eta_curve(tmp_path):
    """LPIPS installed between a run and its rerun: one redone sample has it, the rest not; the summary says no
    mean, and so does the report (one image's value is not the run's). A run at a single eta has no curve."""
    fake_run(tmp_path / "run", "preciseinv", [30.0, 32.0, 34.0])
    manifest = tmp_path / "run" / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    records[0]["lpips"] = 0.001
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "run" / "psnr_vs_eta.png").write_bytes(b"an earlier report's")
    out = report(tmp_path / "run")
    row = next(csv.DictReader(open(tmp_path / "run" / "report.csv")))
    assert row["lpips_mean"] == "" and row["lpips_ci95"] == "" and float(row["psnr_mean"]) == 32.0
    assert row["run"] == "run"  # the run folder itself is named by its name, not "."
    assert not any(Path(f).name == "psnr_vs_eta.png" for f in out["files"])
    assert not (tmp_path / "run" / "psnr_vs_eta.png").exists() and (tmp_path / "run" / "psnr_vs_seconds.png").is_file()


def test_runs_that_differ_in_their_cap_alone_are_told_apart(tmp_path):
    fake_run(tmp_path / "cap50", "preciseinv", [30.0, 31.0], max_iters=50)
    fake_run(tmp_path / "cap200", "preciseinv", [33.0, 34.0])
    fake_run(tmp_path / "ddim", "ddim", [12.0, 13.0], solver=None)
    report(tmp_path)
    rows = {r["run"]: r for r in csv.DictReader(open(tmp_path / "report.csv"))}
    assert (rows["cap50"]["max_iters"], rows["cap200"]["max_iters"], rows["ddim"]["max_iters"]) == ("50", "200", "")
    cells = md_rows(tmp_path)
    assert "hybrid cap 50" in cells["cap50"] and "hybrid cap 200" in cells["cap200"]
    assert not any("cap" in cell for cell in cells["ddim"])  # no solver, no cap
    shutil.rmtree(tmp_path / "cap50")
    report(tmp_path)  # one cap among the runs: not said
    assert "hybrid" in md_rows(tmp_path)["cap200"]  # the cell is exactly "hybrid"
