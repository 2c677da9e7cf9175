"""``python -m preciseinv.report DIR``: the paper's tables and plots from every run folder under DIR.

A run folder is any folder (any depth) holding ``summary.json`` and ``manifest.jsonl`` (what ``fit`` writes, one
per run of a ``--multirun`` sweep). Writes into DIR:

- ``report.md``: one row per run (method, model, T, eta, solver, n, PSNR / SSIM / LPIPS as means with 95 %
  intervals, seconds per image, network cost, peak memory, converged fraction), and the folders skipped;
- ``report.csv``: one row per run, with summary.json's column names (``method``, ``psnr_mean``, ...);
- ``per_image.csv``: every sample of every run;
- ``psnr_vs_seconds.png`` (one point per run: the Pareto view), ``psnr_vs_eta.png`` and ``grid.png`` (the same few
  images across runs), when matplotlib is installed.

A folder whose summary or manifest cannot be read is listed and skipped, never a crash.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import warnings
from pathlib import Path

from preciseinv.callbacks.writer import cost
from preciseinv.outputs.summary import EDIT_KEYS

# two-sided 95 % Student t quantiles for 1..30 degrees of freedom (beyond: the normal 1.96)
_T95 = [12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
METRICS = ("psnr", "ssim", "lpips")
EDIT_METRICS = EDIT_KEYS  # PIE-Bench edits: background preservation, CLIP similarity, structure distance
COLUMNS = ("run", "method", "model", "num_steps", "eta", "solver", "n", "psnr_mean", "psnr_ci95", "ssim_mean",
           "ssim_ci95", "lpips_mean", "lpips_ci95", "seconds_per_image", "cost_mean", "peak_memory_mb",
           "converged_fraction", "nfe_forward_mean", "nfe_backward_mean", "latent_mse_mean", "n_failed",
           *(f"{k}_{stat}" for k in EDIT_METRICS for stat in ("mean", "ci95")))


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


def _name(target: str | None) -> str | None:
    """``preciseinv.solvers.Hybrid`` -> ``hybrid``; ``preciseinv.methods.DDIMInversion`` -> ``ddim``."""
    if not target:
        return None
    from preciseinv.methods import METHODS

    cls = target.rsplit(".", 1)[-1]
    for key, method in METHODS.items():
        if method.__name__ == cls:
            return key
    return cls.lower()


def read_run(folder: Path) -> dict:
    """One run: its report row and its per-image records. Raises ValueError when the folder is unusable."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"summary.json unreadable ({type(err).__name__})") from None
    records = []
    for line in (folder / "manifest.jsonl").read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn line
    if not records:
        raise ValueError("manifest.jsonl has no records")
    config = summary.get("config") or {}
    method = config.get("method") or {}
    row = {"run": "", "method": _name(method.get("_target_")), "model": (config.get("model") or {}).get("name"),
           "num_steps": config.get("num_steps"), "eta": method.get("eta"),
           "solver": _name((method.get("solver") or {}).get("_target_")), "n": len(records)}
    for key in (*METRICS, *EDIT_METRICS):
        row[f"{key}_mean"], row[f"{key}_ci95"] = mean_ci95([r.get(key) for r in records])
    for key in ("seconds_per_image", "cost_mean", "peak_memory_mb", "converged_fraction", "nfe_forward_mean",
                "nfe_backward_mean", "latent_mse_mean", "n_failed"):
        row[key] = summary.get(key)
    if row["cost_mean"] is None:  # runs written before the cost column existed
        row["cost_mean"], _ = mean_ci95([cost(r) for r in records])
    return {"row": row, "records": records, "folder": folder}


def find_runs(root: Path) -> tuple[list[dict], list[tuple[Path, str]]]:
    runs, skipped = [], []
    for summary in sorted(root.rglob("summary.json")):
        folder = summary.parent
        if not (folder / "manifest.jsonl").is_file():
            skipped.append((folder, "no manifest.jsonl"))
            continue
        try:
            run = read_run(folder)
        except ValueError as err:
            skipped.append((folder, str(err)))
            continue
        run["row"]["run"] = str(folder.relative_to(root)) or "."
        runs.append(run)
    for manifest in sorted(root.rglob("manifest.jsonl")):  # a run that died before its summary
        if not (manifest.parent / "summary.json").exists():
            skipped.append((manifest.parent, "no summary.json (run unfinished? python -m preciseinv.fit again)"))
    return runs, skipped


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def _pm(mean, ci, digits: int) -> str:
    return "–" if mean is None else f"{mean:.{digits}f}" + (f" ± {ci:.{digits}f}" if ci is not None else "")


def markdown(runs: list[dict], skipped: list) -> str:
    lines = ["| method | model | T | η | solver | n | PSNR (dB) | SSIM | LPIPS | s / image | cost | peak MB | "
             "converged | run |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in sorted(runs, key=lambda r: (str(r["row"]["model"]), str(r["row"]["method"]), r["row"]["num_steps"] or 0,
                                           -(r["row"]["eta"] or 0))):
        r = run["row"]
        lines.append(f"| {r['method']} | {r['model']} | {r['num_steps']} | {_fmt(r['eta'])} | {r['solver'] or '–'} | "
                     f"{r['n']} | {_pm(r['psnr_mean'], r['psnr_ci95'], 2)} | {_pm(r['ssim_mean'], r['ssim_ci95'], 3)} | "
                     f"{_pm(r['lpips_mean'], r['lpips_ci95'], 3)} | {_fmt(r['seconds_per_image'], 3)} | "
                     f"{_fmt(r['cost_mean'], 0)} | {_fmt(r['peak_memory_mb'], 0)} | {_fmt(r['converged_fraction'])} | "
                     f"{r['run']} |")
    text = "# Report\n\nMeans over the images of each run with 95 % intervals (Student t). `cost`: network " \
           "forward + 2 × backward calls per image.\n\n" + "\n".join(lines) + "\n"
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
                        "cost": cost(rec), "converged": all(rec["converged"]),
                        "recon": rec.get("recon")})
    return out


def plots(root: Path, runs: list[dict], grid_images: int = 4) -> list[Path]:
    """The Pareto view, PSNR against eta, and a grid of the same images across runs (matplotlib needed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    written = []
    label = lambda r: f"{r['method']}{'/' + r['solver'] if r['solver'] else ''} T={r['num_steps']}"  # noqa: E731
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        r = run["row"]
        if r["psnr_mean"] is not None and r["seconds_per_image"] is not None:
            ax.scatter(r["seconds_per_image"], r["psnr_mean"])
            ax.annotate(f"{label(r)} η={_fmt(r['eta'])}", (r["seconds_per_image"], r["psnr_mean"]), fontsize=7)
    ax.set_xscale("log"), ax.set_xlabel("seconds per image"), ax.set_ylabel("PSNR (dB)")
    fig.tight_layout(), fig.savefig(root / "psnr_vs_seconds.png", dpi=120), plt.close(fig)
    written.append(root / "psnr_vs_seconds.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    groups: dict[str, list] = {}
    for run in runs:
        r = run["row"]
        if r["eta"] is not None and r["psnr_mean"] is not None:
            groups.setdefault(f"{label(r)} {r['model']}", []).append((r["eta"], r["psnr_mean"]))
    for name, pts in groups.items():
        ax.plot(*zip(*sorted(pts)), "o-", label=name)
    ax.set_xscale("log"), ax.invert_xaxis(), ax.set_xlabel("η"), ax.set_ylabel("PSNR (dB)")
    if groups:
        ax.legend(fontsize=7)
    fig.tight_layout(), fig.savefig(root / "psnr_vs_eta.png", dpi=120), plt.close(fig)
    written.append(root / "psnr_vs_eta.png")
    grid = _grid(root, runs, grid_images, plt)
    return written + ([grid] if grid else [])


def _grid(root: Path, runs: list[dict], n: int, plt) -> Path | None:
    """Rows: runs; columns: the first ``n`` ids every run has a reconstruction of."""
    from PIL import Image

    with_recon = [run for run in runs if any(rec.get("recon") for rec in run["records"])]
    if not with_recon:
        return None
    common = set.intersection(*({rec["id"] for rec in run["records"] if rec.get("recon")} for run in with_recon))
    ids = sorted(common)[:n]
    if not ids:
        return None
    fig, axes = plt.subplots(len(with_recon), len(ids), figsize=(1.6 * len(ids), 1.6 * len(with_recon)),
                             squeeze=False)
    for i, run in enumerate(with_recon):
        recs = {rec["id"]: rec for rec in run["records"]}
        for j, sample_id in enumerate(ids):
            ax = axes[i][j]
            ax.imshow(Image.open(run["folder"] / recs[sample_id]["recon"]).convert("RGB"))
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(sample_id, fontsize=7)
            if j == 0:
                ax.set_ylabel(run["row"]["run"], fontsize=6)
    fig.tight_layout(), fig.savefig(root / "grid.png", dpi=120), plt.close(fig)
    return root / "grid.png"


def report(root: str | Path) -> dict:
    """Write the report files into ``root``; return {"runs": n, "skipped": [...], "files": [...]}."""
    root = Path(root)
    if not root.is_dir():
        from preciseinv.errors import PreciseInvError

        raise PreciseInvError(f"{str(root)!r} is not a folder; give the folder that holds the run folders")
    runs, skipped = find_runs(root)
    (root / "report.md").write_text(markdown(runs, skipped))
    write_csv(root / "report.csv", [run["row"] for run in runs], COLUMNS)
    write_csv(root / "per_image.csv", per_image_rows(runs),
              ("run", "method", "id", "psnr", "ssim", "lpips", "latent_mse", "nfe_forward", "nfe_backward", "cost",
               "seconds", "converged", "recon"))
    files = [root / "report.md", root / "report.csv", root / "per_image.csv"] + (plots(root, runs) if runs else [])
    return {"runs": len(runs), "skipped": [(str(f), why) for f, why in skipped], "files": [str(f) for f in files]}


def main(argv: list[str] | None = None) -> None:
    from preciseinv.errors import PreciseInvError

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if args and args[0] in ("-h", "--help") else 2)
    try:
        out = report(args[0])
    except PreciseInvError as err:
        print(f"preciseinv: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    print(f"{out['runs']} runs, {len(out['skipped'])} skipped; wrote {', '.join(Path(f).name for f in out['files'])}")
    for folder, why in out["skipped"]:
        print(f"  skipped {folder}: {why}")


if __name__ == "__main__":
    main()
