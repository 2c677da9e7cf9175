"""Batched solvers for the per-step subproblems: one loop (``loop.py``) and update rules plugged into it.

Each rule is one file and one config (``configs/solver/<name>.yaml``): ``adamw`` (the paper's recipe),
``fixed_point``, ``anderson`` and ``spectral`` (forward-only), ``adam`` (Adam directions, per-sample step size
following the residual, decayed on a plateau), ``newton`` (gradient steps of Newton-Raphson length with per-sample
backtracking, as GNRI), ``hybrid`` (forward-only first, gradient where that stalls: the default).
"""

from preciseinv.solvers.adam import Adam
from preciseinv.solvers.adamw import AdamW
from preciseinv.solvers.anderson import Anderson
from preciseinv.solvers.base import SolverStats, UpdateRule
from preciseinv.solvers.fixed_point import FixedPoint
from preciseinv.solvers.hybrid import Hybrid
from preciseinv.solvers.lbfgs import LBFGS
from preciseinv.solvers.loop import LoopHooks, SolverLoop
from preciseinv.solvers.newton import Newton
from preciseinv.solvers.newton_krylov import NewtonKrylov
from preciseinv.solvers.spectral import Spectral

__all__ = ["Adam", "AdamW", "Anderson", "FixedPoint", "Hybrid", "LBFGS", "LoopHooks", "Newton", "NewtonKrylov",
           "SolverLoop", "SolverStats", "Spectral", "UpdateRule"]
