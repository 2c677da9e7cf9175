"""What every solver shares: the per-sample statistics it returns and the update-rule interface.

An update rule is bound to one subproblem, as a torch optimiser is bound to parameters: ``problem.configure_
optimizers()`` returns ``rule = solver(problem)``. The batched loop (``loop.py``) evaluates the residual, decides who
stops, and calls ``rule.step`` on the samples still running; the rule only says how to move them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass
class SolverStats:
    """Per-sample outcome of one subproblem (all tensors (B,))."""

    iters: torch.Tensor  # updates applied
    residual: torch.Tensor  # mean squared residual of the returned parameter
    converged: torch.Tensor  # residual < eta
    nfe_forward: torch.Tensor  # network forward calls
    nfe_backward: torch.Tensor  # network backward calls (vector-Jacobian products)
    phase: torch.Tensor  # index into ``phase_names`` of the phase that converged it; -1 if it did not converge
    phase_names: tuple = ("init",)

    @classmethod
    def empty(cls, batch: int, device, phase_names: tuple) -> "SolverStats":
        zeros = lambda dtype: torch.zeros(batch, dtype=dtype, device=device)  # noqa: E731
        return cls(iters=zeros(torch.long), residual=torch.full((batch,), float("inf"), device=device),
                   converged=zeros(torch.bool), nfe_forward=zeros(torch.long), nfe_backward=zeros(torch.long),
                   phase=torch.full((batch,), -1, dtype=torch.long, device=device), phase_names=phase_names)

    def phases(self) -> list[str | None]:
        """The name of the phase that converged each sample (None where it did not converge)."""
        return [self.phase_names[i] if i >= 0 else None for i in self.phase.tolist()]


def network_cost(forward, backward):
    """The network work of forward and backward (vector-Jacobian product) calls, in forward-call units: a
    backward costs about two forwards. Numbers or tensors; the one place this weighting is written."""
    return forward + 2 * backward


def uses_network_gradient(solver) -> bool:
    """Whether a solver (a rule class or its ``functools.partial``) may ask for a network backward: what bounds the
    batch a device fits (``data.batch_size=auto``)."""
    rule = getattr(solver, "func", solver)
    return bool(getattr(rule, "uses_gradient", False) or getattr(rule, "may_use_gradient", False))


def rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample mask or scalar (b,) viewed to broadcast against ``like`` (b, ...)."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def sq_norm(x: torch.Tensor) -> torch.Tensor:
    """Per-sample squared norm (b, ...) -> (b,)."""
    return x.flatten(1).pow(2).sum(1)


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner product (b, ...) x (b, ...) -> (b,)."""
    return (a * b).flatten(1).sum(1)


def rms(x: torch.Tensor) -> torch.Tensor:
    """Per-sample root mean square (b, ...) -> (b,)."""
    return x.flatten(1).pow(2).mean(1).sqrt()


def secant_length(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample Barzilai-Borwein length <s, s> / <s, y> of a step s (b, ...) and the change y (b, ...) of the
    step direction along it -> (b,); NaN where <s, y> <= 0 (no pair, or no positive curvature along s)."""
    sy = dot(s, y)
    return torch.where(sy > 0, sq_norm(s) / sy, float("nan"))


class UpdateRule(ABC):
    """Moves the running samples of one subproblem. Subclasses implement ``step``; per-sample state lives in
    ``self.state`` (tensors whose first dimension is the working set), which the loop compacts with ``select``.

    - ``uses_gradient``: whether ``step`` needs the gradient of each sample's loss w.r.t. its parameter;
      a rule whose answer differs per sample (the hybrid) overrides ``needs_grad``.
    - ``returns_best``: the loop returns each sample's best iterate (else its last, as the paper's AdamW does).
    - ``restarts``: on a non-finite residual the loop puts the sample back on its best iterate and the rule, which
      sees the non-finite loss in ``step``, changes course; otherwise the sample stops there.
    """

    name = "rule"
    uses_gradient = False
    returns_best = True
    restarts = False
    phases: tuple = ()  # names of the phases a sample can be in (default: (name,))
    eta: float | None = None  # the loop's target and cap, set before ``begin``: a rule need not solve further
    max_iters: int | None = None  # than eta, and may plan with the iterations left

    def __init__(self, problem):
        self.problem = problem
        self.state: dict[str, torch.Tensor] = {}
        self.rows = problem.batch_size  # size of the working set

    def phase_names(self) -> tuple:
        return self.phases or (self.name,)

    def needs_grad(self, live: torch.Tensor | None = None) -> torch.Tensor:
        """(b,) bool: the samples whose next steps need a gradient (read by the host at sync points only); ``live``
        (b,): the samples still running (the others are finished, or padding)."""
        return torch.full((self.rows,), self.uses_gradient, dtype=torch.bool, device=self.problem.eps.device)

    def phase(self) -> torch.Tensor:
        """(b,) long: each running sample's phase, an index into ``phase_names()``."""
        return torch.zeros(self.rows, dtype=torch.long, device=self.problem.eps.device)

    def initial_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """The per-sample state of samples starting at ``p`` (b, ...)."""
        return {}

    def rejections(self) -> torch.Tensor | None:
        """(b,) long: the steps in a row each sample's rule judged failed (the hybrid moves a sample on after
        ``patience`` of them); None for a rule that judges none."""
        return None

    def begin(self, p: torch.Tensor) -> None:
        """Called once with the initial working set (b, ...) before the first step."""
        self.state = self.initial_state(p)

    def seed(self, mask: torch.Tensor, p: torch.Tensor) -> None:
        """Start the samples ``mask`` (b,) afresh from ``p`` (the hybrid hands samples from one rule to the next)."""
        fresh = self.initial_state(p)
        self.state = {k: torch.where(mask.view(-1, *([1] * (v.dim() - 1))), fresh[k], v) for k, v in self.state.items()}

    @abstractmethod
    def step(self, p: torch.Tensor, r: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor | None,
             live: torch.Tensor, it: int) -> torch.Tensor:
        """The next parameter (b, P, h, w) of the running samples. ``r`` (b, C, h, w) is mu(x_t) - target at ``p``,
        ``loss`` (b,) its mean square, ``grad`` d loss / d p where ``needs_grad`` asked for it (zeros elsewhere;
        None when no sample needs one), ``live`` (b,) the samples to move (the others must come back unchanged),
        ``it`` the loop's iteration."""

    @staticmethod
    def best_state(p: torch.Tensor, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        """Initial best-iterate state: ``best`` (b,) = inf, ``best_p`` = p, and ``best_<name>`` for each extra."""
        return {"best": torch.full((p.shape[0],), float("inf"), device=p.device), "best_p": p.clone(),
                **{f"best_{name}": value for name, value in extra.items()}}

    def track_best(self, p: torch.Tensor, loss: torch.Tensor, live: torch.Tensor,
                   **extra: torch.Tensor) -> torch.Tensor:
        """Where ``live`` and ``loss`` beat ``state["best"]``, record it, ``p`` and each extra tensor (as
        ``best_<name>``); return that (b,) mask. A non-finite loss never counts as better."""
        s = self.state
        better = live & (loss < s["best"])
        s["best"] = torch.where(better, loss, s["best"])
        for name, value in {"p": p, **extra}.items():
            s[f"best_{name}"] = torch.where(rows(better, value), value, s[f"best_{name}"])
        return better

    def switched(self) -> int:
        """How many samples changed phase since the last call (telemetry of the hybrid)."""
        return 0

    def select(self, keep: torch.Tensor) -> None:
        """Keep the rows ``keep`` of every per-sample state tensor (the working set shrank or was reordered)."""
        self.state = {k: v[keep] for k, v in self.state.items()}
        self.rows = int(keep.numel())
