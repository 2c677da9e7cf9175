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
        self.returns_best = returns_best  # True: each sample's best iterate (decoder inversion uses it)
        self.lr, (self.beta1, self.beta2) = lr, tuple(betas)
        self.weight_decay, self.adam_eps = weight_decay, eps

    def initial_state(self, p):
        return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}  # (b, P, h, w) first and second moments

    def step(self, p, r, loss, grad, live, it):
        """One AdamW step at step count ``it + 1`` (every running sample has taken ``it`` steps)."""
        m, v, mask = self.state["m"], self.state["v"], rows(live, p)
        m_new = self.beta1 * m + (1 - self.beta1) * grad
        v_new = self.beta2 * v + (1 - self.beta2) * grad * grad
        m_hat = m_new / (1 - self.beta1 ** (it + 1))
        v_hat = v_new / (1 - self.beta2 ** (it + 1))
        self.state = {"m": torch.where(mask, m_new, m), "v": torch.where(mask, v_new, v)}
        return p * (1 - self.lr * self.weight_decay) - self.lr * m_hat / (v_hat.sqrt() + self.adam_eps)
