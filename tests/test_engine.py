"""The engine: one code path for API and CLI; half-precision failures are retried in fp32 and recorded."""

import torch

from preciseinv.engine import InversionEngine
from preciseinv.methods import PreciseInv
from preciseinv.metrics import ImageMetrics
from preciseinv.models import load_model


class NaNUnderAutocast:
    """The mini model, except that its output is NaN for sample 1 whenever autocast is on (an fp16 overflow)."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict(self, x, t, cond):
        out = self.model.predict(x, t, cond)
        if torch.is_autocast_enabled("cpu") and x.shape[0] == 2:
            out = out.clone()
            out[1] = float("nan")
        return out


def images(n=2):
    torch.manual_seed(0)
    return torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4) * 2 - 1, size=32, mode="bilinear")


def test_run_reports_metrics_and_per_step_stats():
    engine = InversionEngine(load_model(), PreciseInv(eta=1e-3, max_iters=300), 2, metrics=ImageMetrics(False))
    out = engine.run(images())
    assert out.latent.shape == (2, 3, 32, 32) and out.recon.shape == (2, 3, 32, 32)
    assert len(out.metrics["psnr"]) == 2 and out.metrics["lpips"] is None
    rows = out.inversion.per_sample()
    assert all(r["converged"] == [True, True] and r["retried_fp32"] is False for r in rows)
    assert engine.metadata()["schedule"]["timesteps"] == [0, 500]


def test_non_finite_half_precision_sample_is_retried_in_fp32():
    engine = InversionEngine(NaNUnderAutocast(load_model()), PreciseInv(eta=1e-2, max_iters=300), 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, result = engine.invert(images())
    assert result.retried_fp32.tolist() == [False, True]
    assert result.finite().all()
    assert all(c[1] for c in result.converged)  # the fp32 retry converged


def test_explicit_timesteps_override_the_schedule():
    engine = InversionEngine(load_model(), PreciseInv(), 2, timesteps=[600, 100])
    assert engine.sampler.schedule.timesteps == (100, 600)
    assert engine.metadata()["schedule"]["timesteps"] == [100, 600]
