"""``init=learned init.path=OUT``: start each step's solver from a predictor trained on finished inversions.

Per sample and step (x*_{k-1} the state below, x0 the clean state):

    x_ddim    = DDIM-inversion step from x*_{k-1}                                   (1 network call)
    x_learned = x_ddim + sqrt(1 - a_k) g([x*_{k-1}, eps_ddim], t_k)                  (the predictor, no network call)
    r_learned, r_ddim = ||mu(x_learned) - x*_{k-1}||^2, ||mu(x_ddim) - x*_{k-1}||^2  (2 calls, in one batch)
    start     = x_learned where r_learned < r_ddim, else x_ddim                      (never a worse start)

The three calls are counted in the sample's ``nfe_forward`` and ``cost``; the manifest records per step which
start was taken. A step the predictor was not trained on (every training inversion's DDIM start already met eta
there), or where ``learn_init``'s judge found the held-out solves from it no cheaper (``preciseinv.inits.judge``;
``steps="all"`` overrides that), takes the DDIM start alone, at its one call. A predictor is tied to the model it was trained for: its
source, state shape (C, h, w), timesteps and sampler are checked before anything is inverted, and another is
refused in one line.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from preciseinv.errors import PreciseInvError, PreciseInvWarning
from preciseinv.inits.base import Start
from preciseinv.inits.ddim import DDIMStart
from preciseinv.inits.predictor import load_predictor, predicted_state
from preciseinv.models.base import select
from preciseinv.samplers import Denoiser, Sampler
from preciseinv.solvers.base import rows

MODEL_KEYS = ("source", "family", "prediction_type", "lora")  # what names the network in model.describe()


def identity(model_info: dict, sampler: str, timesteps, state_shape) -> dict:
    """What a predictor is trained for: the model (``model.describe()`` or a latent file's ``model``), the
    sampler, its timesteps and the state shape (C, h, w)."""
    return {**{key: model_info.get(key) for key in MODEL_KEYS}, "sampler": sampler,
            "timesteps": [float(t) for t in timesteps], "state_shape": [int(n) for n in state_shape]}


def same_source(a, b) -> bool:
    """Two model sources name the same model: equal, or the same local directory however it was written."""
    if a == b:
        return True
    return all(isinstance(s, str) and os.path.isdir(s) for s in (a, b)) and os.path.realpath(a) == os.path.realpath(b)


def mismatches(trained: dict, now: dict) -> list[str]:
    """``key=value there, value now`` for every field of two identities that differs (the shape only where both
    have one)."""
    out = []
    for key, there in trained.items():
        here = now.get(key)
        if key == "state_shape" and here is None:
            continue
        same = (same_source(there, here) if key == "source" else
                len(there) == len(here) and all(abs(a - b) <= 1e-6 * max(1.0, abs(a)) for a, b in zip(there, here))
                if key == "timesteps" else there == here)
        if not same:
            out.append(f"{key} {there} there, {here} now")
    return out


class LearnedStart:
    name = "learned"

    def __init__(self, path: str | os.PathLike, steps: str = "kept", net: torch.nn.Module | None = None,
                 info: dict | None = None):
        """The predictor ``learn_init`` wrote in ``path``; or, while it trains, ``net`` and its ``info`` (the
        identity it serves and the ``steps`` it predicts) in memory. ``steps``: ``kept``, the steps where
        ``learn_init`` measured cheaper held-out solves from the prediction (``preciseinv.inits.judge``), or
        ``all``, every step it was trained on."""
        if steps not in ("kept", "all"):
            raise PreciseInvError(f"init.steps={steps} is not one of kept, all")
        self.path = Path(path).expanduser()
        if net is None:  # a folder that holds none: one line, before any model loads
            net, info = load_predictor(self.path)
        self.net, self.info = net, info
        self.trained = self.info["identity"]
        every = range(len(self.trained["timesteps"]))
        chosen = self.info.get("trained_steps", self.info.get("steps")) if steps == "all" else self.info.get("steps")
        self.steps = set(every if chosen is None else chosen)  # the steps it starts from (0 = t_1)
        self._warned_size = False  # states of another size than the trained one were met (one warning a run)

    def check(self, model, sampler: Sampler) -> None:
        """Refuse, in one line, a predictor trained for another model, sampler or schedule (the engine's builder
        calls this; the state shape is checked with the first batch, before its first step)."""
        now = {**identity(model.describe(), sampler.name, sampler.schedule.timesteps, ()), "state_shape": None}
        wrong = mismatches(self.trained, now)
        if wrong:
            raise PreciseInvError(f"init.path={str(self.path)!r} was trained for another model or schedule ("
                                  f"{'; '.join(wrong)}): train one for this run with python -m preciseinv.learn_init "
                                  "runs=[...] on its own inversions, or use init=ddim")

    def _check_run(self, sampler: Sampler, x0: torch.Tensor) -> None:
        """Refuse another sampler, schedule or number of channels in one line; states of another size (another
        resolution, or data.crop=none's aspect ratios) take the prediction too, each sample judged against its
        DDIM start, with one warning naming the sizes."""
        shape = [int(n) for n in x0.shape[1:]]
        trained = self.trained["state_shape"]
        wrong = mismatches({key: self.trained[key] for key in ("sampler", "timesteps")},
                           identity({}, sampler.name, sampler.schedule.timesteps, shape))
        if trained and shape[0] != trained[0]:
            wrong.append(f"state_shape {trained} there, {shape} now")
        if wrong:
            raise PreciseInvError(f"init.path={str(self.path)!r} was trained for other states ({'; '.join(wrong)}): "
                                  "invert with the model and schedule it was trained on, or use init=ddim")
        if trained and shape[1:] != trained[1:] and not self._warned_size:
            self._warned_size = True
            warnings.warn(f"init.path={str(self.path)!r} was trained on {trained[1]}x{trained[2]} states, these are "
                          f"{shape[1]}x{shape[2]}: each sample starts from its prediction only where that is below "
                          "the DDIM start's residual (sides it cannot take: from the DDIM start)", PreciseInvWarning,
                          stacklevel=3)

    def __call__(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, x_prev: torch.Tensor, k: int,
                 cond: Any = None, noise: torch.Tensor | None = None) -> Start:
        self._check_run(sampler, x0)
        if k not in self.steps:
            return DDIMStart()(denoiser, sampler, x0, x_prev, k, cond, noise)
        B = x0.shape[0]
        net = self.net.to(x0.device)
        if any(side % getattr(net, "size_multiple", 1) for side in x0.shape[-2:]):  # sides its pooling cannot halve
            return DDIMStart()(denoiser, sampler, x0, x_prev, k, cond, noise)
        with torch.no_grad():
            x_ddim = sampler.invert_step(denoiser, x_prev, k, cond)  # (B, C, h, w)
            x_learned = predicted_state(net, sampler, k, x_prev, x_ddim, sampler.noise(x0, x_ddim, k))  # (B, C, h, w)
            both = torch.arange(B, device=x0.device).repeat(2)  # (2B,) both starts scored in one network call
            z = None if noise is None else noise[both]
            out = sampler.denoise(denoiser, torch.cat([x_learned, x_ddim]), k, select(cond, both), z)
            r = (out - x_prev[both]).pow(2).flatten(1).mean(1)  # (2B,) residuals: learned, then DDIM
            take = r[:B] < r[B:]  # (B,) a non-finite prediction compares False: the DDIM start
            x = torch.where(rows(take, x_ddim), x_learned, x_ddim)
        calls = torch.full((B,), 3, dtype=torch.long, device=x0.device)
        return Start(x, calls, [self.name if t else "ddim" for t in take.tolist()])
