"""The spectrum of a step's residual Jacobian where a solve ends, in units of the frozen slope (docs/solvers.md).

    python benchmarks/jacobian.py --suite mini-trailing --crop-seed 1 --crops 16 --index 2 0 --step 1
    python benchmarks/jacobian.py --suite mini-leading mini-clip-trailing --crop-seed 1 --crops 16 --index 0 --step 1

Inverts ``--crops`` crops of the bundled photos (T = 2, eta = 1e-3, cap 200) with ``--solver`` (the default; a
``NAME@KEY=VALUE`` spec as in benchmarks/solvers.py), then for each sample of ``--index`` builds the full Jacobian
J = d r / d eps* of step ``--step`` (0: the least noisy) at the eps* the solve ended with, one autograd row per
element (a 3072-element mini sample takes about a minute on two cores), and divides it by the frozen slope (what
the fixed-point step assumes: the solver's step is about right for an eigenvalue near 1, too short below). Prints
per sample the quantiles of the eigenvalues' real parts, the largest |imaginary part|, how many lie below 0, and
how much of the final residual a GMRES over 8, 16, 24, 32 and 40 Krylov vectors of J would remove (a Newton step
on the linear model).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from solvers import crops, engine_for
from suite import build, select

QUANTILES = (0.01, 0.5, 0.99)
KRYLOV = (8, 16, 24, 32, 40)


def spectrum_rows(engine, batch: torch.Tensor, step: int, index: list[int]) -> list[dict]:
    """Per sample of ``index``: the eigenvalues of J / frozen slope at the end of step ``step``'s solve."""
    from preciseinv.methods.subproblem import NoiseSubproblem

    x0, result = engine.invert(batch)
    states = [x0, *result.states, result.latent]  # x*_0 .. x*_T, (B, C, h, w) each
    sampler = engine.sampler
    eps = sampler.noise(x0, states[step + 1], step)  # the eps* the solve ended with
    problem = NoiseSubproblem(sampler, engine.model.predict, step, x0, states[step], eps,
                              engine.condition(None, x0.shape[0]))
    slope, gain, _ = sampler.gains(step)
    rows = []
    for i in index:
        idx = torch.tensor([i], device=x0.device)
        e = eps[i:i + 1].detach()
        residual = lambda flat: problem.residual(flat.view_as(e), idx).flatten()  # noqa: E731  (D,) -> (D,)
        M = (torch.autograd.functional.jacobian(residual, e.flatten(), vectorize=True) / (slope * gain)).double()
        r = residual(e.flatten()).detach().double()  # (D,)
        ev = torch.linalg.eigvals(M)  # (D,) complex
        rows.append({"sample": i, "timestep": int(sampler.schedule.timesteps[step]), "dim": r.numel(),
                     "loss": r.pow(2).mean().item(),
                     "real": [torch.quantile(ev.real, q).item() for q in QUANTILES], "max": ev.real.max().item(),
                     "imag": ev.imag.abs().max().item(), "negative": int((ev.real < 0).sum()),
                     "gmres": gmres_left(M, r)})
    return rows


def gmres_left(M: torch.Tensor, r: torch.Tensor) -> dict[int, float]:
    """{m: ||r - M y|| / ||r||} minimised over the Krylov space of M on r of each size m in KRYLOV."""
    basis, left = [r / r.norm()], {}
    for m in range(1, max(KRYLOV) + 1):
        V, w = torch.stack(basis, 1), M @ basis[-1]  # (D, m) the basis so far
        for _ in range(2):  # classical Gram-Schmidt, twice
            w = w - V @ (V.T @ w)
        basis.append(w / w.norm().clamp_min(1e-300))
        if m in KRYLOV:
            A = M @ torch.stack(basis[:m], 1)  # (D, m)
            y = torch.linalg.lstsq(A, r[:, None]).solution
            left[m] = ((r[:, None] - A @ y).norm() / r.norm()).item()
    return left


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", nargs="+", required=True, help="held-out suite models (benchmarks/suite.py)")
    p.add_argument("--crops", type=int, default=16)
    p.add_argument("--crop-seed", type=int, default=0)
    p.add_argument("--index", type=int, nargs="+", default=[0], help="the samples whose Jacobian is built")
    p.add_argument("--step", type=int, default=1, help="0: the step at the lowest timestep")
    p.add_argument("--solver", default="hybrid")
    p.add_argument("--scratch", type=Path, default=None, help="keep the built models here")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from preciseinv.models import load_model

    print("| model | t | sample | dim | residual | Re λ: 1 %, 50 %, 99 % | max Re λ | max abs Im λ | below 0 | "
          "GMRES " + ", ".join(map(str, KRYLOV)) + ": residual left |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for entry in select(args.suite):
            model = load_model(build(entry, args.scratch or Path(tmp)), device="cpu")
            engine = engine_for(model, args.solver, entry.timestep_spacing, 1e-3, 200, entry.lr)
            batch = crops(args.crops, model.resolution, args.crop_seed)
            for row in spectrum_rows(engine, batch, args.step, args.index):
                print(f"| {entry.name} | {row['timestep']} | {row['sample']} | {row['dim']} | {row['loss']:.2e} | "
                      + ", ".join(f"{v:.3f}" for v in row["real"]) + f" | {row['max']:.2f} | {row['imag']:.3f} | "
                      f"{row['negative']} | " + ", ".join(f"{row['gmres'][m]:.3f}" for m in KRYLOV) + " |",
                      flush=True)


if __name__ == "__main__":
    main()
