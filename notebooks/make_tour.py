"""Writes notebooks/tour.ipynb from the cells below (edit here, rerun, commit both)."""

from pathlib import Path

import nbformat as nbf

CELLS = [
    ("md", """# preciseinv: a tour

Precise diffusion inversion (PreciseInv, NeurIPS 2025) on the embedded **mini** model (a 1 M-parameter pixel-space
DDPM at 32x32 trained by this project), fully offline: inversion and reconstruction with metrics, the effect of the
stopping threshold eta, prompt editing (on a tiny random text-conditioned model, to show the API), and slerp
interpolation between two inverted images. Every cell here calls the same engine as `python -m preciseinv.fit`."""),
    ("code", """import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import preciseinv
from preciseinv import Inverter

torch.manual_seed(0)
images = sorted((Path(preciseinv.__file__).parent / "assets" / "images").glob("*.png"))
[p.name for p in images]"""),
    ("md", "## Invert and reconstruct: PreciseInv against DDIM inversion, T = 2"),
    ("code", """def show(rows, titles, labels):
    fig, axes = plt.subplots(len(rows), len(rows[0]), figsize=(1.6 * len(rows[0]), 1.7 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            axes[r][c].imshow(((img.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy())
            axes[r][c].set_xticks([]); axes[r][c].set_yticks([])
            if r == 0: axes[r][c].set_title(titles[c], fontsize=8)
        axes[r][0].set_ylabel(labels[r], fontsize=8)
    plt.tight_layout()
    return fig

results = {}
for method in ("ddim", "preciseinv"):
    inv = Inverter("mini", method=method, eta=1e-3, device="cpu")
    start = time.perf_counter()
    res = inv.invert(images)
    recon = inv.reconstruct(res.latents)
    m = inv.metrics(recon, res.images)
    results[method] = recon
    print(f"{method:>10}: PSNR {m['psnr'].mean():.2f} dB  SSIM {m['ssim'].mean():.3f}  "
          f"{(time.perf_counter() - start) / len(images):.2f} s/image")
show([list(res.images), list(results["ddim"]), list(results["preciseinv"])], [p.stem for p in images],
     ["input", "DDIM inv.", "PreciseInv"]);"""),
    ("md", """## Solvers: the paper's AdamW against the default hybrid

The same inversion with `solver="adamw"` (the paper's constant-lr AdamW) and the default `solver="hybrid"`;
the loop's telemetry hook (what W&B, CSV and TensorBoard plot during `fit`) gives the residual of the t = 500
step against the iteration, median over the images still running."""),
    ("code", """curves = {}
for solver in ("adamw", "hybrid"):
    inv = Inverter("mini", solver=solver, eta=1e-3, device="cpu")
    events = []
    inv.engine.hooks.on_sync.append(events.append)
    inv.engine.method.loop.sync_every = 1
    res = inv.invert(images)
    psnr = inv.metrics(inv.reconstruct(res.latents), res.images)["psnr"].mean().item()
    rows = res.result.per_sample()
    print(f"{solver:>7}: PSNR {psnr:.2f} dB, converged {sum(all(r['converged']) for r in rows)}/{len(rows)}, "
          f"cost {sum(r['cost'] for r in rows) / len(rows):.0f} network calls per image, phases {[r['phase'][1] for r in rows]}")
    curves[solver] = [(e["iteration"], e["residual_median"]) for e in events if e["k"] == 1 and e["live"]]
print("residual curve points:", {solver: len(pts) for solver, pts in curves.items()})
for solver, pts in curves.items():
    plt.semilogy(*zip(*pts), label=solver)
plt.axhline(1e-3, color="gray", ls=":"); plt.xlabel("iteration"); plt.ylabel("median residual (t = 500)"); plt.legend();"""),
    ("md", "## The stopping threshold eta: precision against iterations"),
    ("code", """etas, psnrs, iters = [1e-2, 1e-3, 1e-4], [], []
for eta in etas:
    inv = Inverter("mini", eta=eta, max_iters=300, device="cpu")
    res = inv.invert(images)
    psnrs.append(inv.metrics(inv.reconstruct(res.latents), res.images)["psnr"].mean().item())
    iters.append(torch.stack(res.result.iters, 1).sum(1).float().mean().item())
    print(f"eta {eta:g}: PSNR {psnrs[-1]:.2f} dB, {iters[-1]:.0f} solver iterations per image")
fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
a1.semilogx(etas, psnrs, "o-"); a1.set_xlabel("eta"); a1.set_ylabel("PSNR (dB)"); a1.invert_xaxis()
a2.semilogx(etas, iters, "o-"); a2.set_xlabel("eta"); a2.set_ylabel("iterations / image"); a2.invert_xaxis()
plt.tight_layout()
assert psnrs[0] <= psnrs[-1] + 0.5 and iters[0] <= iters[-1]"""),
    ("md", """## Prompt editing

Invert with the source prompt, regenerate from x*_T with the target prompt under classifier-free guidance whose
negative prompt is the source prompt. The tiny model below has random weights (nothing can be downloaded here), so
the edit shows the mechanics, not a meaningful picture; with `Inverter("sd15")` the same call edits real photos."""),
    ("code", """import tempfile
from preciseinv.testing.tiny import save_tiny_sd

tiny = save_tiny_sd(Path(tempfile.mkdtemp()))
editor = Inverter(str(tiny), device="cpu")
inversion, edited = editor.edit(images[:2], ["a photo"] * 2, ["a painting"] * 2, guidance_scale=5.0)
recon = editor.reconstruct(inversion.latents, ["a photo"] * 2)
print("reconstruction PSNR (random VAE):", editor.metrics(recon, inversion.images)["psnr"].tolist())
show([list(inversion.images), list(recon), list(edited)], ["1", "2"], ["input", "recon", "edit"]);"""),
    ("md", "## Slerp interpolation between two inverted images"),
    ("code", """inv = Inverter("mini", device="cpu")
res = inv.invert([images[0], images[1]])
frames = inv.interpolate(res.latents[0], res.latents[1], frames=7)
ends = inv.metrics(frames[[0, -1]], res.images)["psnr"]
print("endpoint PSNR against the inputs:", ends.tolist())
show([list(frames)], [f"t={i / 6:.2f}" for i in range(7)], ["slerp"]);"""),
]


def main() -> None:
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, Path(__file__).with_name("tour.ipynb"))


if __name__ == "__main__":
    main()
