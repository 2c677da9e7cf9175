"""data.batch_size=auto: the search, the CPU default, and the record in run.json."""

import json

import pytest

from preciseinv.accel.batch_size import CPU_BATCH, largest_fitting


@pytest.mark.parametrize("capacity,limit", [(1, 256), (5, 256), (64, 256), (100, 256), (300, 256), (0, 256), (7, 7)])
def test_largest_fitting_finds_the_capacity(capacity, limit):
    calls = []

    def fits(n):
        calls.append(n)
        return n <= capacity

    assert largest_fitting(fits, limit) == min(capacity, limit)
    assert len(calls) <= 2 * max(1, limit).bit_length() + 1  # doubling, then bisection: logarithmic


def test_auto_is_the_default_and_is_recorded(tmp_path, fit_in_process, capsys):
    fit_in_process("~logger", f"output_dir={tmp_path}")
    assert f"data.batch_size=auto -> {CPU_BATCH} (CPU default)" in capsys.readouterr().out
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["data"]["batch_size"] == "auto" and run["resolved"]["batch_size"] == CPU_BATCH
    startup = run["resolved"]["startup"]  # where the first seconds went, for the GPU runs' minute of start-up
    assert set(startup) == {"model_load_s", "model_to_device_s", "batch_probe_s"} and startup["model_load_s"] > 0
    # the run's pace: 4 images in one batch of 8 leave no interval to measure a steady rate over
    assert run["last_run"] == {"images": 4, "batches": 1, "ranks": 1, "steady_images_per_second": None}
    fit_in_process("~logger", f"output_dir={tmp_path}")  # a rerun with nothing left to do: none of it is its own
    rerun = json.loads((tmp_path / "run.json").read_text())
    assert "last_run" not in rerun and "resolved" not in rerun and rerun["data"] == run["data"]


def test_the_probe_differentiates_the_network_only_for_methods_that_do(tiny_sd):
    """Forward-only methods and solvers are probed without a graph (far larger batches fit); gradient solvers and
    the hybrid (whose last phase is one) with a forward and backward."""
    from functools import partial

    from preciseinv.accel.batch_size import network_step
    from preciseinv.engine import InversionEngine
    from preciseinv.methods import METHODS, PreciseInv
    from preciseinv.models import load_model
    from preciseinv.solvers import AdamW, Anderson, FixedPoint, Hybrid, Newton

    gradients = {name: PreciseInv(solver=partial(rule)).network_gradients
                 for name, rule in [("adamw", AdamW), ("hybrid", Hybrid), ("newton", Newton),
                                    ("fixed_point", FixedPoint), ("anderson", Anderson)]}
    assert gradients == {"adamw": True, "hybrid": True, "newton": True, "fixed_point": False, "anderson": False}
    for name, method in METHODS.items():  # as the probe reads it (a method that does not say: the heavier work)
        assert getattr(method(), "network_gradients", True) == (name == "preciseinv"), name
    engine = InversionEngine(load_model(str(tiny_sd)), PreciseInv(solver=partial(FixedPoint)), 2)
    latent_shape = (4, 16, 16)
    out = network_step(engine, 3, latent_shape, gradient=False)
    assert out.shape == (3, *latent_shape) and out.grad_fn is None  # no graph kept: the forward-only memory
    grad = network_step(engine, 3, latent_shape, gradient=True)
    assert grad.shape == (3, *latent_shape) and grad.abs().sum() > 0
