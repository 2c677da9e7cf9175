"""``solver=adamw``: the paper's recipe. AdamW (beta 0.9 / 0.999, weight decay 0.01) at a constant learning rate
(0.1 for SD1.4, 0.05 for LCM-SD1.5 and SDXL, 0.025 for SD3: the model preset's ``lr``), returning the last
iterate. The update is torch.optim.AdamW's arithmetic written out, so that it can be masked per sample: a sample
that stopped keeps its eps*, both moments and its step count.
"""

from __future__ import annotations

import torch

from preciseinv.solvers.base import UpdateRule, rows


class AdamW(UpdateRule):
    name = "adamw"
    uses_gradient = True
    returns_best = False  # the paper's loop returns where AdamW stopped

    def __init__(self, problem, lr: float = 0.1, betas=(0.9, 0.999), weight_decay: float = 0.01,
                 eps: float = 1e-8, returns_best: bool = False):
        super().__init__(problem)
        if not lr > 0:
            from preciseinv.errors import PreciseInvError

            raise PreciseInvError(f"AdamW's learning rate must be > 0, got {lr}")
        self.returns_best = returns_best  # True: each sample's best iterate (decoder inversion uses it)
        self.lr, (self.beta1, self.beta2) = lr, tuple(betas)
        self.weight_decay, self.adam_eps = weight_decay, eps

    def initial_state(self, p):
        return {"m": torch.zeros_like(p), "v": torch.zeros_like(p),  # (b, P, h, w) first and second moments
                "t": torch.zeros(p.shape[0], device=p.device)}  # (b,) steps taken (a sample may start late)

    def step(self, p, r, loss, grad, live, it):
        """One AdamW step per running sample at its own step count (``it + 1`` when every sample started at 0)."""
        if grad is None:  # in the hybrid: the samples that just switched here have no gradient yet
            return p
        m, v, mask = self.state["m"], self.state["v"], rows(live, p)
        t = self.state["t"] + 1  # (b,)
        m_new = self.beta1 * m + (1 - self.beta1) * grad
        v_new = self.beta2 * v + (1 - self.beta2) * grad * grad
        m_hat = m_new / rows((1 - self.beta1 ** t.double()).float(), p)  # 1 - 0.999^t in fp64: t = 1 is 1e-3
        v_hat = v_new / rows((1 - self.beta2 ** t.double()).float(), p)
        self.state = {"m": torch.where(mask, m_new, m), "v": torch.where(mask, v_new, v),
                      "t": torch.where(live, t, self.state["t"])}
        return p * (1 - self.lr * self.weight_decay) - self.lr * m_hat / (v_hat.sqrt() + self.adam_eps)
