"""``solver=adam``: Adam directions with a per-sample step size that follows the residual, decayed on a plateau.

The paper's AdamW moves every element by about ``lr`` per step whatever the residual, so a constant ``lr`` has a
floor (0.1 stalls near 7e-3 on a random SD, 0.01 is needed for 1e-5). Here each sample's step size is

    lr_i = scale_i * rms(newton_step(r_i))

the size of the fixed-point correction at its current residual, so steps shrink as the residual does and no
preset learning rate is needed; ``scale_i`` starts at ``scale`` and is multiplied by ``factor`` whenever the
sample's best residual has not improved (by 0.1 %) for ``patience`` steps, which also restarts its moments from
its best iterate (step decay on a plateau, per sample). One forward and one backward per iteration.
"""

from __future__ import annotations

import torch

from preciseinv.solvers.base import UpdateRule, rms, rows, sq_norm


class Adam(UpdateRule):
    name = "adam"
    uses_gradient = True
    restarts = True  # a non-finite trial: back to the best iterate

    def __init__(self, problem, scale: float = 1.0, patience: int = 10, factor: float = 0.5,
                 betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(problem)
        self.scale, self.patience, self.factor = scale, patience, factor
        (self.beta1, self.beta2), self.adam_eps = tuple(betas), eps

    def initial_state(self, p):
        b, dev = p.shape[0], p.device
        return {"m": torch.zeros_like(p), "v": torch.zeros_like(p), "t": torch.zeros(b, device=dev),
                "scale": torch.full((b,), self.scale, device=dev), "wait": torch.zeros(b, device=dev),
                **self.best_state(p)}

    def step(self, p, r, loss, grad, live, it):
        if grad is None:
            return p
        s = self.state
        live = live & (sq_norm(grad) != 0)  # a sample without a gradient this iteration holds still
        progress = live & (loss < 0.999 * s["best"])  # read before the update below
        self.track_best(p, loss, live)
        s["wait"] = torch.where(progress, 0, s["wait"] + live.float())
        decay = live & (s["wait"] >= self.patience)  # plateau: smaller steps, fresh moments, from the best
        s["scale"] = torch.where(decay, s["scale"] * self.factor, s["scale"])
        s["wait"] = torch.where(decay, 0, s["wait"])
        for key in ("m", "v"):
            s[key] = torch.where(rows(decay, p), 0, s[key])
        s["t"] = torch.where(decay, 0, s["t"])
        move = live & ~decay
        t = s["t"] + 1  # (b,) Adam step count per sample
        m = self.beta1 * s["m"] + (1 - self.beta1) * grad
        v = self.beta2 * s["v"] + (1 - self.beta2) * grad * grad
        m_hat, v_hat = m / rows(1 - self.beta1 ** t, p), v / rows(1 - self.beta2 ** t, p)
        lr = s["scale"] * rms(self.problem.newton_step(r))  # (b,)
        trial = p - rows(lr, p) * m_hat / (v_hat.sqrt() + self.adam_eps)
        mask = rows(move, p)
        s["m"], s["v"] = torch.where(mask, m, s["m"]), torch.where(mask, v, s["v"])
        s["t"] = torch.where(move, t, s["t"])
        return torch.where(mask, trial, torch.where(rows(decay, p), s["best_p"], p))
