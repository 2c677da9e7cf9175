"""``python -m preciseinv.report DIR``: the paper's tables and plots from every run folder under DIR.

A run folder is any folder (any depth) holding ``summary.json``, ``manifest.jsonl`` or ``run.json`` (what ``fit``
writes, one per run of a ``--multirun`` sweep). Writes into DIR:

- ``report.md``: one row per finished run (method, model, T, eta, solver (and its retry), start, n, PSNR / SSIM /
  LPIPS as means with 95 % intervals, seconds per image, network cost, peak memory, converged fraction); below it the
  unfinished runs (interrupted, killed, still running: images done, of how many when known) and the folders skipped;
- ``report.csv``: one row per finished run, with summary.json's column names (``method``, ``psnr_mean``, ...);
- ``per_image.csv``: every sample of every finished run;
- ``psnr_vs_seconds.png`` (one point per run: the Pareto view), ``psnr_vs_eta.png``, ``cost_vs_images.png`` (each
  run's cost per image as it went on: a learned start makes later images cheaper) and ``grid.png`` (the inputs,
  then the same images as each run reconstructed them). Each method has one colour in every plot; a plot the runs
  give none of (no image in every run, no eta sweep) is removed, not left from an earlier report.

Exact methods (reconstruction equal to the input by construction, PSNR of 100 dB or more) read ``exact``, and
columns that do not apply to a method are blank: solver and start without a solver, eta and converged for the
exact methods. A folder whose files cannot be read is listed and skipped, never a crash; no run folder at all is one
line on stderr and exit status 2.
"""

from __future__ import annotations

import csv
import functools
import importlib
import json
import math
import sys
import zlib
from pathlib import Path

from preciseinv.errors import PreciseInvError
from preciseinv.outputs.records import latest_records, rank_record_files, read_jsonl
from preciseinv.outputs.summary import EDIT_KEYS, cost

# two-sided 95 % Student t quantiles for 1..30 degrees of freedom (beyond: the normal 1.96)
_T95 = [12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
METRICS = ("psnr", "ssim", "lpips")
EDIT_METRICS = EDIT_KEYS  # PIE-Bench edits: background preservation, CLIP similarity, structure distance
COLUMNS = ("run", "method", "model", "num_steps", "eta", "solver", "init", "retry", "sampler", "n", "exact",
           "psnr_mean", "psnr_ci95", "ssim_mean", "ssim_ci95", "lpips_mean", "lpips_ci95", "seconds_per_image",
           "cost_mean", "peak_memory_mb", "converged_fraction", "nfe_forward_mean", "nfe_backward_mean",
           "latent_mse_mean", "n_failed", "max_iters",
           *(f"{k}_{stat}" for k in EDIT_METRICS for stat in ("mean", "ci95")))
RUN_FILES = ("summary.json", "manifest.jsonl", "run.json")
EXACT_PSNR = 100.0  # an exact method's reconstruction at or above this is its input up to float rounding (MSE 1e-10)
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
METHOD_COLOURS = {"preciseinv": "#d62728", "ddim": "#1f77b4", "renoise": "#ff7f0e", "easyinv": "#2ca02c",
                  "gnri": "#9467bd", "edict": "#8c564b", "bdia": "#e377c2", "belm": "#17becf", "ceiling": "#7f7f7f"}
MARKERS = "osD^vP*Xph"  # the runs of one method, in table order
CELL_INCHES, DPI = 1.6, 120  # grid.png: one image per cell
PLOTS = ("psnr_vs_seconds.png", "psnr_vs_eta.png", "cost_vs_images.png", "grid.png")  # what plots() may write


def mean_ci95(values: list) -> tuple[float | None, float | None]:
    """(mean, half-width of its 95 % interval) over the finite values; (None, None) when there are none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    t = _T95[len(xs) - 2] if len(xs) - 1 <= len(_T95) else 1.96
    return mean, t * sd / math.sqrt(len(xs))


def method_colour(method: str | None) -> str:
    """The colour of a method in every plot: fixed for the known methods, from a checksum of the name otherwise."""
    return METHOD_COLOURS.get(method) or TAB10[zlib.crc32(str(method).encode()) % len(TAB10)]


def _name(target: str | None) -> str | None:
    """The name a run was given on the command line: ``preciseinv.methods.DDIMInversion`` -> ``ddim`` (its key in
    METHODS), ``preciseinv.solvers.FixedPoint`` -> ``fixed_point`` (its module, which names its config)."""
    if not target:
        return None
    from preciseinv.methods import METHODS

    module, cls = target.rsplit(".", 1)
    for key, method in METHODS.items():
        if method.__name__ == cls:
            return key
    try:
        return getattr(importlib.import_module(module), cls).__module__.rsplit(".", 1)[-1]
    except (ImportError, AttributeError):  # a class of another version of the package
        return cls.lower()


@functools.lru_cache(maxsize=None)
def preset_path(name: str | None) -> str | None:
    """The hub id or folder model preset ``name`` loads (None: not a preset, or the embedded model)."""
    from preciseinv.presets import known_presets, preset_config

    return preset_config(name).get("path") if name in known_presets() else None


def exact_method(name: str | None) -> bool:
    """A method whose reconstruction is the input by construction (EDICT, BDIA, BELM; the ceiling on pixel
    models): no eta to meet."""
    from preciseinv.methods import EXACT_METHODS

    return name in EXACT_METHODS


def _json(path: Path) -> dict | None:
    """A JSON file's object; None when the file is not there. Raises ValueError when it cannot be read."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path.name} unreadable ({type(err).__name__})") from None


def finished(folder: Path, summary: dict | None, done: int, limit: int | None) -> bool | None:
    """Whether the run reached its end: summary.json's ``complete``, unless a later run published more samples and
    died (or is running). Summaries written before they said: run.json's ``last_run`` (written at the end), rank
    files left behind (merged and removed at the end) or fewer samples than ``data.limit`` tell; else None."""
    if summary is None or done > summary["n"]:
        return False
    if "complete" in summary:
        return summary["complete"]
    if limit and summary["n"] + summary.get("n_failed", 0) < limit:
        return False
    if "last_run" in (_json(folder / "run.json") or {}):
        return True
    return False if rank_record_files(folder) else None


def read_run(folder: Path) -> dict:
    """One run: its per-image records, ``complete`` (True, False, or None: not known), the images ``done`` of
    ``total`` (None: not known), and its report row (the metrics only for a run not known to be unfinished).
    Raises ValueError when the folder is unusable."""
    summary = _json(folder / "summary.json")
    config = (summary or {}).get("config") or _json(folder / "run.json") or {}
    method = config.get("method") or {}
    solver = _name((method.get("solver") or {}).get("_target_"))
    init = _name((config.get("init") or {}).get("_target_")) or "ddim"  # where each step's solver started
    retry = _name((method.get("retry") or {}).get("_target_"))  # a second solve of what the first left above eta
    model = config.get("model") or {}
    name, path = model.get("name"), model.get("path")  # a path other than the preset's: what loaded, beside it
    shown = f"{name} ({path})" if path and path not in (name, preset_path(name)) else name
    row = {"run": "", "method": _name(method.get("_target_")), "model": shown,
           "num_steps": config.get("num_steps"), "solver": solver,
           "eta": None if exact_method(_name(method.get("_target_"))) else method.get("eta"),  # what converged means
           "init": init if solver else None, "retry": retry if solver else None,
           "max_iters": method.get("max_iters") if solver else None,  # the cap of each step's solve
           "sampler": config.get("sampler") or "auto"}  # auto: the model's own
    records = read_jsonl(folder / "manifest.jsonl")
    tried = sorted({str(r["retry"]) for r in records if r.get("retry")})  # what the samples' records say was run
    if tried and solver:  # a later rerun without retry= leaves them as they are, and its config says none
        row["retry"] = ",".join(tried)
    done = len(latest_records(folder)) if rank_record_files(folder) else len(records)  # what a run that died published
    limit = (config.get("data") or {}).get("limit")
    run = {"row": row, "records": records, "folder": folder, "config": config, "done": done,
           "total": (summary or {}).get("n_total", limit),
           "complete": finished(folder, summary, done, limit)}
    if run["complete"] is False:
        return run
    if not records:
        raise ValueError("manifest.jsonl has no records")
    row["n"] = len(records)
    for key in (*METRICS, *EDIT_METRICS):
        values = [r.get(key) for r in records]
        # LPIPS on some samples only (its weights installed between a run and its rerun): no mean over the run, as
        # summary.json says (the edit metrics are measured where a row has a mask: over those)
        row[f"{key}_mean"], row[f"{key}_ci95"] = (None, None) if key == "lpips" and None in values else \
            mean_ci95(values)
    for key in ("seconds_per_image", "cost_mean", "peak_memory_mb", "converged_fraction", "nfe_forward_mean",
                "nfe_backward_mean", "latent_mse_mean", "n_failed"):
        row[key] = summary.get(key)
    if row["cost_mean"] is None:  # runs written before the cost column existed
        row["cost_mean"], _ = mean_ci95([cost(r) for r in records])
    row["exact"] = exact_method(row["method"]) and row["psnr_mean"] is not None \
        and row["psnr_mean"] >= EXACT_PSNR  # on a latent model the autoencoder bounds even these
    if exact_method(row["method"]):
        row["converged_fraction"] = None  # the plain sampler's residual: says nothing of an exact reconstruction
    return run


def find_runs(root: Path) -> tuple[list[dict], list[dict], list[tuple[Path, str]]]:
    """(finished runs, unfinished runs, skipped folders with why) under ``root``. Runs not known to have finished
    (written before summary.json said) count as finished."""
    runs, unfinished, skipped = [], [], []
    for folder in sorted({path.parent for path in root.rglob("*") if path.name in RUN_FILES}):
        try:
            run = read_run(folder)
        except ValueError as err:
            skipped.append((folder, str(err)))
            continue
        inside = folder.relative_to(root)
        run["row"]["run"] = str(inside) if inside.parts else folder.resolve().name  # the run folder itself: its name
        (unfinished if run["complete"] is False else runs).append(run)
    return _ordered(runs), unfinished, skipped


def _ordered(runs: list[dict]) -> list[dict]:
    """Table order: model, method, T, the tightest eta last, solver, start."""
    return sorted(runs, key=lambda run: (str(run["row"]["model"]), str(run["row"]["method"]),
                                         run["row"]["num_steps"] or 0, -(run["row"]["eta"] or 0),
                                         str(run["row"]["solver"]), str(run["row"]["init"]),
                                         str(run["row"].get("retry"))))


def _fmt(value, digits: int = 2) -> str:
    """A value of an applicable column ("–": not measured)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def _pm(mean, ci, digits: int) -> str:
    return "–" if mean is None else f"{mean:.{digits}f}" + (f" ± {ci:.{digits}f}" if ci is not None else "")


def _solver(r: dict) -> str:
    """A run's solver as its table cell and plot label say it: ``hybrid``, or ``hybrid + retry spectral``, with its
    cap where the report's runs differ in it (``hybrid cap 50``)."""
    return (r["solver"] or "") + (f" + retry {r['retry']}" if r.get("retry") else "") + \
        (f" cap {r['max_iters']}" if r.get("cap_shown") and r["solver"] else "")


def table_row(r: dict) -> str:
    """One run as a row of the main table; blank where a column does not apply to its method."""
    cells = [r["method"], r["model"], r["num_steps"], _fmt(r["eta"]) if r["eta"] is not None else "", _solver(r),
             r["init"] or "", r["n"], "exact" if r["exact"] else _pm(r["psnr_mean"], r["psnr_ci95"], 2),
             _pm(r["ssim_mean"], r["ssim_ci95"], 3), _pm(r["lpips_mean"], r["lpips_ci95"], 3),
             _fmt(r["seconds_per_image"], 3), _fmt(r["cost_mean"], 0), _fmt(r["peak_memory_mb"], 0),
             "" if exact_method(r["method"]) else _fmt(r["converged_fraction"]), r["sampler"], r["run"]]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _progress(run: dict) -> str:
    """``3 of 5000`` images done (``3`` where the dataset's size is not recorded)."""
    return f"{run['done']} of {run['total']}" if run["total"] else str(run["done"])


def markdown(runs: list[dict], unfinished: list[dict], skipped: list) -> str:
    lines = ["| method | model | T | η | solver | start | n | PSNR (dB) | SSIM | LPIPS | s / image | cost | peak MB | "
             "converged | sampler | run |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [table_row(run["row"]) for run in runs]
    text = ("# Report\n\nMeans over the images of each finished run with 95 % intervals (Student t). `cost`: network "
            "forward + 2 × backward calls per image. `exact`: the reconstruction is the input by construction (PSNR "
            "of 100 dB or more). `start`: where each step's solver began (`init=`). `sampler`: `sampler=` (auto: the "
            "model's own). Blank: does not apply to the "
            "method (solver and start without a solver; η and converged for exact methods); –: not measured. The plots "
            "leave the exact runs out.\n\n" + "\n".join(lines) + "\n")
    unknown = [run["row"]["run"] for run in runs if run["complete"] is None]
    if unknown:
        text += ("\nNot known to have finished (written before summary.json said): "
                 + ", ".join(f"`{name}`" for name in unknown) + ".\n")
    edits = [run["row"] for run in runs if run["row"]["bg_psnr_mean"] is not None]
    if edits:  # PIE-Bench edit runs
        text += ("\n## Editing (PIE-Bench)\n\nBackground preservation outside the edit mask, CLIP similarity of the edit "
                 "to its target prompt (whole image, edited region), DINO structure distance to the source.\n\n"
                 "| method | model | n | bg PSNR | bg LPIPS | bg MSE | bg SSIM | CLIP whole | CLIP edited | structure | run "
                 "|\n|---|---|---|---|---|---|---|---|---|---|---|\n")
        for r in edits:
            text += (f"| {r['method']} | {r['model']} | {r['n']} | {_pm(r['bg_psnr_mean'], r['bg_psnr_ci95'], 2)} | "
                     f"{_pm(r['bg_lpips_mean'], r['bg_lpips_ci95'], 3)} | {_fmt(r['bg_mse_mean'], 4)} | "
                     f"{_pm(r['bg_ssim_mean'], r['bg_ssim_ci95'], 3)} | {_pm(r['clip_whole_mean'], r['clip_whole_ci95'], 2)} | "
                     f"{_pm(r['clip_edited_mean'], r['clip_edited_ci95'], 2)} | {_fmt(r['structure_distance_mean'], 4)} | "
                     f"{r['run']} |\n")
    if unfinished:
        text += ("\n## Unfinished\n\nInterrupted, killed or still running: left out of the tables and plots (to "
                 "resume one, rerun the command that made it into the same folder: the output_dir= or hydra.sweep.dir= "
                 "its stop message named).\n\n"
                 + "\n".join(f"- `{run['row']['run']}`" + (f" ({label(run['row'])})" if run["row"]["method"] else "")
                             + f": images done: {_progress(run)}" for run in unfinished) + "\n")
    if skipped:
        text += "\n## Skipped\n\n" + "\n".join(f"- `{folder}`: {why}" for folder, why in skipped) + "\n"
    return text


def write_csv(path: Path, rows: list[dict], columns) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def per_image_rows(runs: list[dict]) -> list[dict]:
    out = []
    for run in runs:
        for rec in run["records"]:
            out.append({"run": run["row"]["run"], "method": run["row"]["method"], "id": rec["id"],
                        **{k: rec.get(k) for k in ("psnr", "ssim", "lpips", "latent_mse", "nfe_forward",
                                                   "nfe_backward", "seconds")},
                        "cost": cost(rec), "recon": rec.get("recon"),
                        # an exact method's residual says nothing of its reconstruction: blank, as in report.md
                        "converged": None if exact_method(run["row"]["method"]) else all(rec["converged"])})
    return out


def label(r: dict, with_model: bool = False, with_eta: bool = True, sep: str = " ") -> str:
    """A run's name in the plots: method/solver, T, η where it applies, a start other than DDIM's (the model where
    runs differ in it)."""
    start = f" from {r['init']}" if r.get("init") not in (None, "ddim") else ""
    parts = [f"{r['method']}{'/' + _solver(r) if r['solver'] else ''}{start}", f"T={r['num_steps']}"]
    parts += [f"η={_fmt(r['eta'])}"] if r["eta"] is not None and with_eta else []
    return sep.join(parts + ([str(r["model"])] if with_model else []))


def _styles(rows: list[dict]) -> list[dict]:
    """Per row: its method's colour and a marker of its own among that method's rows."""
    seen: dict = {}
    styles = []
    for r in rows:
        seen[r["method"]] = seen.get(r["method"], -1) + 1
        styles.append({"color": method_colour(r["method"]), "marker": MARKERS[seen[r["method"]] % len(MARKERS)]})
    return styles


def _save(fig, ax, path: Path, plt) -> Path:
    """Legend beside the axes, the figure cut to what it holds: no label covers a point or leaves the figure."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7, frameon=False)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def plots(root: Path, runs: list[dict], grid_images: int = 4) -> list[Path]:
    """The Pareto view, PSNR against eta (exact runs, at 100-120 dB, left out), cost per image against images seen,
    and the grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = [run["row"] for run in runs if run["row"]["psnr_mean"] is not None and not run["row"]["exact"]]
    several_models = len({r["model"] for r in rows}) > 1
    timed = [r for r in rows if r["seconds_per_image"]]
    if timed:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r, style in zip(timed, _styles(timed)):
            ax.scatter(r["seconds_per_image"], r["psnr_mean"], label=label(r, several_models), **style)
        ax.set_xscale("log"), ax.set_xlabel("seconds per image"), ax.set_ylabel("PSNR (dB)")
        written.append(_save(fig, ax, root / "psnr_vs_seconds.png", plt))
    groups: dict[tuple, list] = {}  # the runs that differ in eta alone
    for r in rows:
        if r["solver"]:
            groups.setdefault((r["method"], r["solver"], r["init"], r.get("retry"), r.get("max_iters"), r["sampler"],
                               r["num_steps"], r["model"]),
                              []).append(r)
    groups = {key: members for key, members in groups.items() if len({r["eta"] for r in members}) > 1}  # a sweep
    if groups:
        fig, ax = plt.subplots(figsize=(6, 4))
        firsts = [members[0] for members in groups.values()]
        for first, members, style in zip(firsts, groups.values(), _styles(firsts)):
            ax.plot(*zip(*sorted((r["eta"], r["psnr_mean"]) for r in members)),
                    label=label(first, several_models, with_eta=False), **style)
        ax.set_xscale("log"), ax.invert_xaxis(), ax.set_xlabel("η"), ax.set_ylabel("PSNR (dB)")
        written.append(_save(fig, ax, root / "psnr_vs_eta.png", plt))
    costed = [run for run in runs if run["row"]["solver"] and len(run["records"]) > 1]
    if costed:  # what each image costs as a run goes on (a learned warm start makes later images cheaper)
        fig, ax = plt.subplots(figsize=(6, 4))
        for run, style in zip(costed, _styles([run["row"] for run in costed])):
            costs = [float(cost(r) or 0) for r in run["records"]]  # manifest order: each rank's in the order inverted
            window = max(1, len(costs) // 20)
            smooth = [sum(costs[i - window:i]) / window for i in range(window, len(costs) + 1)]
            ax.plot(range(window, len(costs) + 1), smooth, color=style["color"], marker=style["marker"],
                    markevery=max(1, len(smooth) // 8), label=label(run["row"], several_models))  # one method's
            # runs share its colour: the markers tell them apart
        ax.set_xlabel("images seen"), ax.set_ylabel("cost per image (moving mean)")
        written.append(_save(fig, ax, root / "cost_vs_images.png", plt))
    grid = _grid(root, runs, grid_images, plt)
    written += [grid] if grid else []
    for name in PLOTS:  # a plot an earlier report made that these runs give none of (no shared image, no eta
        if root / name not in written:  # sweep): removed, so that the folder shows only this report's
            (root / name).unlink(missing_ok=True)
    return written


def _input(run: dict, record: dict, size: tuple[int, int]):
    """The input image of a record, cut to the reconstruction's size as the run's ``data.crop`` did; None when its
    source is not a file that can be read here."""
    from PIL import Image, ImageOps

    from preciseinv.datamodules.images import to_rgb

    try:
        with Image.open(record.get("source") or "") as img:
            img = to_rgb(img)
    except OSError:
        return None
    if (run["config"].get("data") or {}).get("crop") == "stretch":
        return img.resize(size, Image.Resampling.LANCZOS)
    return ImageOps.fit(img, size, Image.Resampling.LANCZOS)


def _grid(root: Path, runs: list[dict], n: int, plt) -> Path | None:
    """First row the inputs, then one row per run; columns: the first ``n`` ids every run has a reconstruction of."""
    from PIL import Image

    with_recon = [run for run in runs if any(rec.get("recon") for rec in run["records"])]
    if not with_recon:
        return None
    recons = [{rec["id"]: rec for rec in run["records"] if rec.get("recon")} for run in with_recon]
    ids = sorted(set.intersection(*(set(by_id) for by_id in recons)))[:n]
    if not ids:
        return None
    fig, axes = plt.subplots(len(with_recon) + 1, len(ids), squeeze=False,
                             figsize=(CELL_INCHES * len(ids), CELL_INCHES * (len(with_recon) + 1)))
    for j, sample_id in enumerate(ids):
        images = [Image.open(run["folder"] / by_id[sample_id]["recon"]).convert("RGB")
                  for run, by_id in zip(with_recon, recons)]
        for i, image in enumerate([_input(with_recon[0], recons[0][sample_id], images[0].size), *images]):
            if image is None:
                axes[i][j].text(0.5, 0.5, "input not found", ha="center", va="center", fontsize=6)
            else:
                axes[i][j].imshow(image)
        axes[0][j].set_title(sample_id, fontsize=7)
    several_models = len({run["row"]["model"] for run in with_recon}) > 1
    axes[0][0].set_ylabel("input", fontsize=6)
    for i, run in enumerate(with_recon, start=1):
        axes[i][0].set_ylabel(label(run["row"], several_models, sep="\n"), fontsize=6,
                              color=method_colour(run["row"]["method"]))
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(root / "grid.png", dpi=DPI)  # no tight bbox: every cell keeps its size
    plt.close(fig)
    return root / "grid.png"


def report(root: str | Path) -> dict:
    """Write the report files into ``root``; return {"runs": n, "unfinished": [(run, progress)], "skipped":
    [(folder, why)], "files": [...]}. Raises PreciseInvError when ``root`` holds no run folder."""
    root = Path(root)
    if not root.is_dir():
        raise PreciseInvError(f"{str(root)!r} is not a folder; give the folder that holds the run folders")
    runs, unfinished, skipped = find_runs(root)
    if len({run["row"]["max_iters"] for run in runs + unfinished if run["row"]["solver"]}) > 1:
        for run in runs + unfinished:  # runs that differ in their cap alone would read alike
            run["row"]["cap_shown"] = True
    if not (runs or unfinished or skipped):
        raise PreciseInvError(f"no runs in {str(root)!r} (no summary.json, manifest.jsonl or run.json at any depth); "
                              "give the output_dir of a fit run, or the folder of a --multirun sweep")
    (root / "report.md").write_text(markdown(runs, unfinished, skipped))
    write_csv(root / "report.csv", [run["row"] for run in runs], COLUMNS)
    write_csv(root / "per_image.csv", per_image_rows(runs),
              ("run", "method", "id", "psnr", "ssim", "lpips", "latent_mse", "nfe_forward", "nfe_backward", "cost",
               "seconds", "converged", "recon"))
    files = [root / "report.md", root / "report.csv", root / "per_image.csv"] + (plots(root, runs) if runs else [])
    return {"runs": len(runs), "unfinished": [(run["row"]["run"], _progress(run)) for run in unfinished],
            "skipped": [(str(f), why) for f, why in skipped], "files": [str(f) for f in files]}


def main(argv: list[str] | None = None) -> None:
    from preciseinv.console import fail, interruptible, plain

    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(plain(__doc__))
        raise SystemExit(0)
    if len(args) != 1:
        got = f"got {len(args)}: {' '.join(args)}" if args else "got none"
        fail(f"give one folder, the runs' parent: python -m preciseinv.report DIR ({got}; --help says what it "
             "writes)")
    with interruptible(resumable=False, hydra=False):  # Ctrl-C while reading the runs: one line
        try:
            out = report(args[0])
        except PreciseInvError as err:
            fail(err)
    print(f"{out['runs']} runs, {len(out['skipped'])} skipped, {len(out['unfinished'])} unfinished; "
          f"wrote {', '.join(Path(f).name for f in out['files'])}")
    if out["runs"] and not any(Path(f).name == "grid.png" for f in out["files"]):
        print("  no grid.png: no image has a reconstruction in every finished run")
    for run, progress in out["unfinished"]:
        print(f"  unfinished {run}: images done: {progress}")
    for folder, why in out["skipped"]:
        print(f"  skipped {folder}: {why}")


if __name__ == "__main__":
    main()
