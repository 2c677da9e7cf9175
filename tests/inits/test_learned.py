"""init=learned on the mini DDPM: the safeguard keeps the better start per sample, its calls are counted, and a
predictor trained for another model, schedule or state shape is refused in one line before anything inverts."""

from pathlib import Path

import pytest
import torch

from preciseinv.api import Inverter
from preciseinv.errors import PreciseInvError
from preciseinv.inits import LearnedStart
from preciseinv.inits.learned import identity
from preciseinv.methods import PreciseInv
from preciseinv.mini.train import RandomCrops
from preciseinv.models import load_model
from preciseinv.testing.tiny import save_tiny_predictor

CLIP = Path(__file__).resolve().parents[2] / "benchmarks" / "assets" / "mini-ddpm-clip"


@pytest.fixture(scope="module")
def mini():
    model = load_model(None)
    return model, model.sampler(2), RandomCrops(seed=3).sample(8)  # (8, 3, 32, 32) unseen crops


def predictor(folder, model, sampler, scale):
    return save_tiny_predictor(folder, identity(model.describe(), sampler.name, sampler.schedule.timesteps,
                                                (3, 32, 32)), output_scale=scale)


def residual(model, sampler, x, x_prev, k):
    with torch.no_grad():
        return (sampler.denoise(model.predict, x, k) - x_prev).pow(2).flatten(1).mean(1)


def test_each_sample_starts_from_the_lower_residual(mini, tmp_path):
    model, sampler, x0 = mini
    start = LearnedStart(predictor(tmp_path / "p", model, sampler, 0.003))  # random: better for some, worse for others
    start.check(model, sampler)
    x_prev = x0  # the state below step 1 (any state will do)
    chosen = start(model.predict, sampler, x0, x_prev, 1)
    ddim = sampler.invert_step(model.predict, x_prev, 1)
    r_chosen, r_ddim = residual(model, sampler, chosen.x, x_prev, 1), residual(model, sampler, ddim, x_prev, 1)
    assert set(chosen.taken) == {"learned", "ddim"}  # the case is a mixed one
    assert (r_chosen <= r_ddim).all()
    for i, taken in enumerate(chosen.taken):
        assert (r_chosen[i] < r_ddim[i]) if taken == "learned" else torch.equal(chosen.x[i], ddim[i])
    assert chosen.calls.tolist() == [3] * 8  # the DDIM step and both residuals


def test_the_starts_calls_are_counted_and_recorded(mini, tmp_path):
    model, sampler, x0 = mini
    method = PreciseInv(eta=1e-3, max_iters=5, init=LearnedStart(predictor(tmp_path / "p", model, sampler, 0.003)))
    plain = PreciseInv(eta=1e-3, max_iters=5)
    result, base = method.invert(model.predict, sampler, x0[:4]), plain.invert(model.predict, sampler, x0[:4])
    rows = result.per_sample()
    assert all(len(r["init"]) == 2 and set(r["init"]) <= {"learned", "ddim"} for r in rows)
    # the start's three calls a step (the DDIM start's one, two residuals) are counted in nfe_forward and cost
    for r, b, it, it_base in zip(rows, base.per_sample(), torch.stack(result.iters, 1), torch.stack(base.iters, 1)):
        assert r["nfe_forward"] >= 2 * 3 + int(it.sum()) + 2 and b["nfe_forward"] >= 2 * 1 + int(it_base.sum()) + 2
        assert r["cost"] == r["nfe_forward"] + 2 * r["nfe_backward"]


def test_a_predictor_for_another_model_is_refused_in_one_line(mini, tmp_path):
    model, sampler, x0 = mini
    folder = predictor(tmp_path / "p", model, sampler, 0.0)
    clip = load_model(str(CLIP))
    with pytest.raises(PreciseInvError, match=r"trained for another model or schedule \(source embedded:mini-ddpm "
                                              r"there, .*mini-ddpm-clip now\)") as err:
        LearnedStart(folder).check(clip, clip.sampler(2))
    assert "\n" not in str(err.value)
    with pytest.raises(PreciseInvError, match="timesteps"):  # another schedule
        LearnedStart(folder).check(model, model.sampler(2, timestep_spacing="trailing"))
    with pytest.raises(PreciseInvError, match="sampler ddim there, ddpm now"):
        LearnedStart(folder).check(model, model.sampler(2, name="ddpm"))
    with pytest.raises(PreciseInvError, match=r"state_shape \[3, 32, 32\] there, \[4, 32, 32\] now"):
        LearnedStart(folder)(model.predict, sampler, torch.zeros(1, 4, 32, 32), torch.zeros(1, 4, 32, 32), 0)


def test_states_of_another_size_take_the_prediction_judged_per_sample(mini, tmp_path):
    """Another resolution, or data.crop=none's aspect ratios: the (convolutional) predictor runs on them, each sample
    starting from whichever of its prediction and the DDIM start has the lower residual; one warning names the
    sizes. Sides its pooling cannot halve take the DDIM start."""
    from preciseinv.errors import PreciseInvWarning
    from preciseinv.inits.predictor import SmallUNet

    model, sampler, x0 = mini
    start = LearnedStart(predictor(tmp_path / "p", model, sampler, 0.0))
    wide = torch.nn.functional.interpolate(x0[:2], size=(32, 48))  # (2, 3, 32, 48)
    with pytest.warns(PreciseInvWarning, match=r"trained on 32x32 states, these are 32x48: each sample starts from "
                                               r"its prediction only where"):
        got = start(model.predict, sampler, wide, wide, 0)
    assert got.x.shape == wide.shape and got.calls.tolist() == [3, 3] and set(got.taken) <= {"learned", "ddim"}
    deep = SmallUNet(3, 3, (32, 32), mults=(1, 2, 2, 2))  # halves three times: sides must be multiples of 8
    assert deep.size_multiple == 8
    odd = LearnedStart(tmp_path / "p", net=deep, info=start.info)
    narrow = x0[:1, :, :, :28]  # (1, 3, 32, 28): 28 is a multiple of the mini UNet's 4, not of 8
    plain = odd(model.predict, sampler, narrow, narrow, 0)
    assert plain.taken == ["ddim"] and plain.calls.tolist() == [1]


def test_the_api_takes_a_learned_start_and_refuses_one_for_another_model(mini, tmp_path):
    model, sampler, x0 = mini
    folder = predictor(tmp_path / "p", model, sampler, 0.0)
    inv = Inverter("mini", init=folder, max_iters=3, device="cpu")
    assert isinstance(inv.engine.method.init, LearnedStart)
    assert inv.invert(x0[:2]).result.init[1] == ["ddim", "ddim"]  # untrained: the prediction is the DDIM start
    with pytest.raises(PreciseInvError, match="trained for another model"):  # when the engine is built
        Inverter(str(CLIP), init=folder, device="cpu")
    with pytest.raises(PreciseInvError, match="init='learned' needs the predictor"):
        Inverter("mini", init="learned", device="cpu")


def test_by_default_only_the_steps_the_judge_kept_start_from_the_prediction(mini, tmp_path):
    import json

    model, sampler, x0 = mini
    folder = predictor(tmp_path / "p", model, sampler, 0.003)
    info = json.loads((folder / "predictor.json").read_text())
    (folder / "predictor.json").write_text(json.dumps({**info, "steps": [], "trained_steps": [1]}))
    kept, every = LearnedStart(folder), LearnedStart(folder, steps="all")
    assert kept.steps == set() and every.steps == {1}
    assert kept(model.predict, sampler, x0, x0, 1).calls.tolist() == [1] * 8  # the DDIM start alone
    assert every(model.predict, sampler, x0, x0, 1).calls.tolist() == [3] * 8
    with pytest.raises(PreciseInvError, match="init.steps=some is not one of kept, all"):
        LearnedStart(folder, steps="some")


def test_a_saving_is_kept_only_when_clear_of_the_pair_to_pair_spread():
    from preciseinv.inits.judge import paired_saving

    ddim = torch.tensor([50.0, 60.0, 40.0, 55.0])
    assert paired_saving(ddim, ddim - 10)[1] == pytest.approx(10)  # the same saving on every pair: kept
    saved, low = paired_saving(ddim, ddim + torch.tensor([-30.0, 25.0, -20.0, 21.0]))  # saves 1 on average
    assert saved == pytest.approx(1.0) and low < 0  # but within the spread: not kept
    assert paired_saving(ddim[:1], ddim[:1] - 10)[1] == float("-inf")  # one pair tells nothing
