"""The held-out solver suite: models of every family, built from configs with several weight seeds and two sizes,
split once by seed into a tuning half and an evaluation half.

Solvers are tuned on the tuning half only; claims ("never worse than adamw", "converges on every family") are made
from the evaluation half. The evaluation seeds (10, 11) played no part in choosing the default solver.

    from suite import SUITE, build
    [m.name for m in SUITE if m.half == "eval"]

Families: SD with epsilon and v prediction, LCM, SDXL, SD3, FLUX (random weights, latent space), and pixel DDPMs
with and without ``clip_sample``; sizes ``s`` (the test models' widths, one layer per block), ``m`` (twice the
width, two layers per block) and ``raw`` (size ``s`` with the output layer left as initialised: the stress test).
The trained pixel DDPMs (``mini``, ``mini-clip``) at leading and trailing spacing are listed apart
(``half == "trained"``): the solvers were developed on them, so they count as tuning data, and their own targets are
reported beside the evaluation half.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

TUNE_SEEDS, EVAL_SEEDS = (0, 1), (10, 11)
# s: the test models' size; m: twice the width, two layers per block; raw: size s with the output layer as
# initialised (not scaled by 0.1), a far rougher residual than a trained network's: the stress test
SIZES = {"s": {"width": 1, "layers": 1}, "m": {"width": 2, "layers": 2},
         "raw": {"width": 1, "layers": 1, "output_scale": 1.0}}
# family -> (builder in preciseinv.testing.tiny, its extra arguments, the preset's (paper's) AdamW lr)
FAMILIES = {
    "sd": ("save_tiny_sd", {}, 0.1),
    "sd-v": ("save_tiny_sd", {"prediction_type": "v_prediction"}, 0.1),
    "lcm": ("save_tiny_lcm", {}, 0.05),
    "sdxl": ("save_tiny_sdxl", {}, 0.05),
    "sd3": ("save_tiny_sd3", {"with_t5": False}, 0.025),
    "flux": ("save_tiny_flux", {}, 0.025),
    "pixel": ("save_tiny_pixel", {}, 0.1),
    "pixel-clip": ("save_tiny_pixel", {"clip_sample": True}, 0.1),
}
HERE = Path(__file__).parent


@dataclass(frozen=True)
class SuiteModel:
    name: str  # family-size-seed, or a trained model's name with its spacing
    family: str
    half: str  # tune | eval | trained
    lr: float
    spacing: str | None = None  # None: the model's own
    seed: int | None = None
    size: str | None = None
    builder: tuple = field(default=(), compare=False)  # (builder name, kwargs)

    @property
    def timestep_spacing(self) -> str | None:
        """The sampler's timestep_spacing to set: None keeps the model's own (the mini models' own is leading)."""
        return self.spacing if self.spacing != "leading" else None


def _suite() -> list[SuiteModel]:
    out = []
    for family, (builder, extra, lr) in FAMILIES.items():
        for size, dims in SIZES.items():
            for half, seeds in (("tune", TUNE_SEEDS), ("eval", EVAL_SEEDS)):
                for seed in seeds:
                    out.append(SuiteModel(f"{family}-{size}-{seed}", family, half, lr, seed=seed, size=size,
                                          builder=(builder, {**extra, **dims, "seed": seed})))
    for name in ("mini", "mini-clip"):
        for spacing in ("leading", "trailing"):
            out.append(SuiteModel(f"{name}-{spacing}", name, "trained", 0.1, spacing=spacing))
    return out


SUITE = _suite()


def select(names_or_halves: list[str]) -> list[SuiteModel]:
    """The suite's models named (``sd-s-0``), of a half (``tune``, ``eval``, ``trained``), or of a family (``sdxl``)."""
    picked = [m for m in SUITE if m.name in names_or_halves or m.half in names_or_halves
              or m.family in names_or_halves]
    unknown = set(names_or_halves) - {m.name for m in SUITE} - {m.half for m in SUITE} - {m.family for m in SUITE}
    if unknown:
        raise SystemExit(f"unknown suite models or halves: {', '.join(sorted(unknown))}")
    return picked


def build(model: SuiteModel, scratch: Path) -> str | None:
    """The model's diffusers directory (built under ``scratch`` once), or None for the embedded mini model."""
    if model.family == "mini":
        return None
    if model.family == "mini-clip":
        return str(HERE / "assets" / "mini-ddpm-clip")
    import preciseinv.testing.tiny as tiny

    folder = scratch / model.name
    builder, kwargs = model.builder
    if not folder.exists() or not any(folder.iterdir()):
        getattr(tiny, builder)(folder, **kwargs)
    return str(next(p for p in folder.iterdir() if (p / "model_index.json").exists()))
