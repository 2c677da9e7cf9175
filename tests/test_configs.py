"""Every option of every config group composes and instantiates (the lightning-hydra-template check)."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from preciseinv.presets import CONFIG_DIR, register_resolvers

register_resolvers()

GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml") if not p.stem.startswith("_"))
          for g in Path(CONFIG_DIR).iterdir() if g.is_dir()}


def composed(*overrides, name="fit"):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(name, overrides=["output_dir=/tmp/preciseinv-config-test", *overrides])


def test_groups_present():
    assert {"model", "data", "method", "solver", "trainer", "logger", "writer", "callbacks"} <= set(GROUPS)


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_option_instantiates(group, option, tmp_path):
    extra = {("data", "folder"): [f"data.root={tmp_path}"], ("data", "coco"): [f"data.root={tmp_path}"],
             ("data", "webdataset"): [f"data.urls='{tmp_path}/s-{{0..1}}.tar'"],
             ("data", "piebench"): [f"data.root={tmp_path}"]}.get((group, option), [])
    if (group, option) == ("init", "learned"):  # a trained predictor's folder (here an untrained one)
        from preciseinv.testing.tiny import save_tiny_predictor

        from preciseinv.inits.learned import identity

        trained_for = identity({"source": "embedded:mini-ddpm"}, "ddim", [0, 500], [3, 32, 32])
        extra = [f"init.path={save_tiny_predictor(tmp_path / 'predictor', trained_for)}"]
    if group == "paper_row":  # a method, and for preciseinv its solver and eta: the experiments sweep them
        cfg = composed(f"paper_row={option}")
        method, *rest = option.split("_")
        assert cfg.method._target_.rsplit(".", 1)[1].lower() == {"ddim": "ddiminversion"}.get(method, method)
        if rest:  # preciseinv_<solver>_eta<eta>
            assert cfg.solver._target_.rsplit(".", 1)[1].lower() == rest[0]
            assert cfg.method.eta == float(rest[1].removeprefix("eta"))
        return
    if group == "experiment":  # global overrides plus a sweep: see test_paper_experiments_hold_the_protocols
        cfg = composed(f"experiment={option}", "data.root=/data/coco")
        assert cfg.data._target_.endswith("CocoDataModule") and cfg.guidance_scale == 1.0
        return
    if (group, option) == ("data", "edit_pairs"):  # filled from the edit command's top-level keys
        (tmp_path / "x.png").write_bytes(b"")  # the one edit's image must exist
        cfg = composed(f"image={tmp_path}/x.png", "source=a", "target=b", name="edit")
    elif group == "predictor":  # learn_init's group
        cfg = composed(f"predictor={option}", f"runs=[{tmp_path}]", name="learn_init")
    else:
        cfg = composed(f"{group}={option}", *extra)
    node = cfg[group]
    if (group, option) == ("retry", "none"):  # no second solve: the method's retry is null
        assert node is None and instantiate(cfg.method).retry is None
        return
    if group == "callbacks":
        objs = [instantiate(c) for c in node.values()]
        assert objs
    elif node.get("_partial_"):  # a solver (the method binds it to each subproblem), the engine (to a model)
        obj = instantiate(node)
        assert obj.func.__name__ == node._target_.rsplit(".", 1)[1]
    elif group == "writer":
        assert instantiate(node, output_dir=str(tmp_path)).output_dir == tmp_path
    else:
        kwargs = {"resolution": 32} if group == "data" else {}
        obj = instantiate(node, **kwargs)
        assert type(obj).__name__ == node._target_.rsplit(".", 1)[1]


def test_model_presets_carry_the_paper_settings():
    for name, lr in {"mini": 0.1, "sd14": 0.1, "sd15": 0.1, "sd21": 0.1, "sdxl": 0.05, "sd3": 0.025,
                     "lcm_sd15": 0.05, "sdxl_turbo": 0.05}.items():
        cfg = composed(f"model={name}", "solver=adamw")
        assert cfg.model.lr == lr and cfg.method.solver.lr == lr and cfg.num_steps == 2
    assert composed("model=sd15").model.path == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    for name, path in {"flux_schnell": "black-forest-labs/FLUX.1-schnell", "flux_dev": "black-forest-labs/FLUX.1-dev",
                       "sd35_large": "stabilityai/stable-diffusion-3.5-large",
                       "sd35_medium": "stabilityai/stable-diffusion-3.5-medium"}.items():
        cfg = composed(f"model={name}")
        assert cfg.model.path == path and cfg.model.dtype == "bfloat16" and cfg.model.precision == "bf16-mixed"
    assert composed("model=flux_dev").model.guidance_embedding == 3.5
    assert composed("model=flux_schnell").model.guidance_embedding is None  # the family's own default
    lcm = composed("model=lcm_sd15")
    assert lcm.sampler == "lcm" and lcm.model.lora == "latent-consistency/lcm-lora-sdv1-5"
    assert composed("model=sd15").sampler is None and composed("model=lcm_sd15", "sampler=ddim").sampler == "ddim"


def test_paper_experiments_hold_the_protocols():
    """Each experiment's sweep is the paper's table: every baseline once per T (they ignore eta and the solver),
    PreciseInv at both solvers x both etas per T, and no two runs alike."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for name, model, res, runs in (("sd14", "sd14", 512, 24), ("lcm_sd15", "lcm_sd15", 512, 18),
                                       ("sdxl", "sdxl", 1024, 24)):
            overrides = [f"experiment=paper_coco_{name}", "data.root=/x", "output_dir=/tmp/x"]
            cfg = compose("fit", overrides=overrides, return_hydra_config=True)
            assert cfg.model.name == model and cfg.data.resolution == res and cfg.data.prompt == ""
            assert not cfg.data.use_captions and cfg.guidance_scale == 1.0
            folder = compose("fit", overrides=[*overrides, "data=folder"])  # the protocol on one's own images
            instantiate(folder.data)
            params = cfg.hydra.sweeper.params
            assert set(params) == {"paper_row", "num_steps"} and params.num_steps == "2,4"
            seen = set()
            for row in params.paper_row.split(","):
                for steps in (2, 4):
                    run = compose("fit", overrides=[*overrides, f"paper_row={row}", f"num_steps={steps}"])
                    method = run.method._target_.rsplit(".", 1)[1]
                    solver = (run.solver._target_.rsplit(".", 1)[1], run.method.eta) if method == "PreciseInv" else None
                    assert run.model.name == model and run.num_steps == steps
                    seen.add((method, solver, steps))
            assert len(seen) == runs  # no run repeats another
            exact = {"EDICT", "BDIA", "BELM"} if name != "lcm_sd15" else set()  # they need a deterministic sampler
            assert {m for m, _, _ in seen} == {"DDIMInversion", "ReNoise", "EasyInv", "GNRI", "Ceiling",
                                               "PreciseInv"} | exact
            assert {s for m, s, _ in seen if m == "PreciseInv"} == {(rule, eta) for rule in ("AdamW", "Hybrid")
                                                                   for eta in (1e-2, 1e-5)}


def test_edit_and_interpolate_configs_compose():
    assert composed("image=x.png", "source=a", "target=b", name="edit").edit_guidance_scale == 7.5
    cfg = composed("a=x.png", "b=y.png", name="interpolate")
    assert cfg.frames == 8 and cfg.mode == "slerp" and cfg.num_steps == 2


def test_presets_recommend_a_precision_that_applies_only_on_gpu():
    import torch

    assert composed("model=sd3").model.precision == "bf16-mixed"
    assert composed("model=sdxl").model.precision == "16-mixed"
    assert composed("model=mini").model.precision == "32-true"
    expected = "bf16-mixed" if torch.cuda.is_available() else "32-true"
    assert composed("model=sd3").trainer.precision == expected
    assert composed("model=sd3", "trainer.precision=bf16-mixed").trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("option", sorted(p.stem for p in (Path(CONFIG_DIR) / "solver").glob("*.yaml")))
def test_solver_config_defaults_are_the_class_defaults(option):
    """The Python API and tests build solvers from their classes, runs from the configs: both give the same rule."""
    import inspect

    from hydra.utils import get_class

    cfg = OmegaConf.load(Path(CONFIG_DIR) / "solver" / f"{option}.yaml")
    params = inspect.signature(get_class(cfg._target_).__init__).parameters
    for key in cfg:
        if key.startswith("_") or OmegaConf.is_interpolation(cfg, key):  # lr: ${model.lr}, the preset's
            continue
        value = OmegaConf.to_object(cfg[key]) if OmegaConf.is_config(cfg[key]) else cfg[key]
        default = params[key].default
        assert (list(default) if isinstance(default, tuple) else default) == value, (option, key, default, value)
