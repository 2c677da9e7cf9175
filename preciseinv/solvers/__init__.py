"""Batched solvers for the per-step subproblems: each sample stops on its own once its residual is below eta."""

from preciseinv.solvers.adamw import AdamWSolver, SolverStats

__all__ = ["AdamWSolver", "SolverStats"]
