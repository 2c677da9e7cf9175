"""preciseinv.builder: one config tree builds every entry point's engine, so fit, the API and reconstruct_file agree;
latent files store the config that rebuilds them; the layers import only what is below them."""

import re
from pathlib import Path

import pytest
import torch

from preciseinv.api import Inverter, reconstruct_file
from preciseinv.builder import build_engine, choice, file_config, inverter_config
from preciseinv.datamodules.images import load_image
from preciseinv.errors import PreciseInvError
from preciseinv.outputs import load_latent

ROOT = Path(__file__).parents[1]
PHOTOS = sorted((ROOT / "preciseinv" / "assets" / "images").glob("*.png"))


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    from preciseinv.fit import run
    from preciseinv.presets import CONFIG_DIR, register_resolvers

    out = tmp_path_factory.mktemp("builder") / "run"
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("fit", ["solver=fixed_point", "method.max_iters=60", "~logger", "lpips=false",
                              "data.batch_size=4", f"output_dir={out}"])
    run(cfg)
    return out


def test_fit_the_api_and_reconstruct_file_give_the_same_latents(fit_run):
    inverter = Inverter("mini", solver="fixed_point", max_iters=60, device="cpu")
    images = torch.stack([load_image(p, 32) for p in PHOTOS])
    ours = inverter.invert(images).latents
    for i, photo in enumerate(PHOTOS):
        tensors, meta = load_latent(fit_run / "latents" / f"{photo.stem}.safetensors")
        assert torch.allclose(tensors["latent"], ours[i], atol=1e-5), photo.stem
        image, _ = reconstruct_file(fit_run / "latents" / f"{photo.stem}.safetensors", device="cpu")
        assert torch.allclose(image, inverter.reconstruct(ours[i:i + 1])[0], atol=1e-4), photo.stem


def test_a_latent_file_stores_the_config_that_rebuilds_it(fit_run):
    path = fit_run / "latents" / f"{PHOTOS[0].stem}.safetensors"
    tensors, meta = load_latent(path)
    config = meta["config"]
    assert config["method"]["_target_"] == "preciseinv.methods.PreciseInv"
    assert config["method"]["solver"]["_target_"] == "preciseinv.solvers.FixedPoint"
    assert config["model"]["name"] == "mini" and config["num_steps"] == 2
    # a file of an older run (no stored config) rebuilds the same engine from its metadata
    legacy = {k: v for k, v in meta.items() if k != "config"}
    new, old = file_config(meta), file_config(legacy)
    assert list(new.timesteps) == list(old.timesteps) == list(meta["schedule"]["timesteps"])
    model = Inverter("mini", device="cpu").model
    latent = tensors["latent"][None]
    assert torch.equal(build_engine(new, model).reconstruct(latent), build_engine(old, model).reconstruct(latent))


def test_the_api_is_sugar_over_the_config_tree():
    cfg = inverter_config("mini", solver="adamw", eta=1e-5, max_iters=7, lr=0.3, timesteps=[1, 501])
    assert cfg.method.eta == 1e-5 and cfg.method.max_iters == 7 and cfg.method.solver.lr == 0.3
    assert list(cfg.engine.timesteps) == [1, 501] and cfg.engine.method.solver._target_.endswith("AdamW")
    engine = build_engine(cfg, Inverter("mini", device="cpu").model)
    assert engine.method.max_iters == 7 and [int(t) for t in engine.sampler.schedule.timesteps] == [1, 501]


@pytest.mark.parametrize("group,name", [("solver", "adamm"), ("method", "belm2"), ("encoder", "vae"),
                                        ("model", "sd99")])
def test_an_unknown_name_is_one_line_listing_the_known(group, name):
    with pytest.raises(PreciseInvError, match=f"unknown {group} '{name}'; available: "):
        choice(group, name)


def test_newton_krylov_is_a_solver_config():
    assert choice("solver", "newton_krylov") == "solver=newton_krylov"


def _imports(folder: str) -> str:
    return "\n".join(line for path in (ROOT / "preciseinv" / folder).rglob("*.py")
                     for line in path.read_text().splitlines() if re.match(r"\s*(from|import) ", line))


def test_layers_import_only_what_is_below_them():
    for folder in ("samplers", "solvers", "models"):
        assert "lightning" not in _imports(folder), folder
    for folder in ("samplers", "solvers", "models", "methods", "encoders", "inits"):
        assert "preemption" not in _imports(folder), folder
    # the engine is built in one place: its config node, through preciseinv.builder
    for folder in ("preciseinv", "benchmarks", "callbacks", "datamodules"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "InversionEngine(" not in path.read_text(), path


def test_a_model_spec_is_used_as_given(tiny_sd):
    from preciseinv.models.loading import ModelSpec

    cfg = inverter_config(ModelSpec(name="mine", path=str(tiny_sd), num_steps=4, sampler="ddpm", lr=0.05))
    assert (cfg.model.num_steps, cfg.model.sampler, cfg.model.lr, cfg.num_steps) == (4, "ddpm", 0.05, 4)
    plain = inverter_config(ModelSpec(path=str(tiny_sd), num_steps=4, sampler="ddpm", lr=0.05))  # name left "mini"
    assert (plain.model.num_steps, plain.model.sampler, plain.model.lr) == (4, "ddpm", 0.05)


def test_interpolate_takes_the_presets_sampler():
    from preciseinv.presets import compose

    cfg = compose("interpolate", ["model=lcm_sd15", "a=x.png", "b=y.png", "output_dir=."])
    assert cfg.engine.sampler == "lcm"


def test_a_method_without_a_solver_ignores_a_solver_rule():
    from functools import partial

    from preciseinv.solvers import AdamW

    inverter = Inverter("mini", method="ddim", solver=partial(AdamW, lr=0.1), device="cpu")
    assert type(inverter.engine.method).__name__ == "DDIMInversion"


def test_a_file_is_rebuilt_without_the_writing_runs_speed_settings(fit_run):
    _, meta = load_latent(fit_run / "latents" / f"{PHOTOS[0].stem}.safetensors")
    meta["config"]["model"].update(compile="reduce-overhead", channels_last=True)
    cfg = file_config(meta)
    assert cfg.model.compile is False and cfg.model.channels_last is False


def test_a_sweep_of_output_dirs_runs_in_hydras_sweep_folders():
    from preciseinv.presets import run_dir_from_output_dir

    assert run_dir_from_output_dir(["output_dir=/a"]) == ["output_dir=/a", "hydra.run.dir=/a"]
    quoted = "output_dir='runs/method=ddim,num_steps=2'"  # one folder named like a sweep's
    assert run_dir_from_output_dir([quoted]) == [quoted, "hydra.run.dir='runs/method=ddim,num_steps=2'"]
    for argv in (["output_dir=/a,/b"], ["-m", "output_dir=/a"], ["hydra.mode=MULTIRUN", "output_dir=/a"]):
        assert run_dir_from_output_dir(argv) == argv
