"""One place that builds a run: a composed config (``configs/``) -> the parts that run it.

``fit``, ``edit``, ``interpolate``, ``reconstruct``, the Python API (``Inverter``, ``reconstruct_file``) and the
benchmarks all come here. The config tree decides the parts (``engine``: ``configs/engine/default.yaml``, with the
``method``, its ``solver`` and the ``encoder`` inside; ``module``: the Lightning glue), and the rules that make a
config runnable are written once: required keys, T >= 1, a model given by path alone (its family preset's
defaults), an exact method only on a deterministic sampler, the precision rule (half weights without autocast), and
constructors' refusals as one line.

    cfg = compose("fit", ["model=sd15", "solver=adamw"])   # or the DictConfig of a Hydra run
    prepare(cfg)                                           # checks and resolves it, in place
    engine = build_engine(cfg, model)                      # the one InversionEngine of any entry point
"""

from __future__ import annotations

from preciseinv.errors import PreciseInvError
from preciseinv.presets import FAMILY_KEYS, adopt_family, check_preset_fits, compose, did_you_mean, explicit_keys

__all__ = ["compose", "prepare", "instantiate", "build_engine", "engine_factory", "inverter_config", "file_config",
           "CONFIG_KEYS"]

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")  # diffusers' schedulers'
# the part of a run's config a latent file stores: what regenerates its image (``file_config`` reads it back)
CONFIG_KEYS = ("model", "method", "sampler", "num_steps", "timesteps", "timestep_spacing", "guidance_scale")


def instantiate(node, **kwargs):
    """``hydra.utils.instantiate``, letting a ``PreciseInvError`` raised by a constructor through unwrapped, and
    Lightning's own word on a bad setting (``MisconfigurationException`` or a ``ValueError`` of a Lightning class,
    e.g. ``trainer.accelerator=gpu`` on a machine without one, ``trainer.strategy=nonsense``) as one line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        first, target = err.__cause__, str(node.get("_target_", ""))
        refusals = (MisconfigurationException, ValueError) if target.startswith("lightning.") \
            else (MisconfigurationException,)
        cause = first
        while cause is not None and not isinstance(cause, (PreciseInvError, *refusals)):
            cause = cause.__cause__
        if isinstance(cause, refusals):
            what = target.rsplit(".", 1)[-1] or "setting"
            lines = str(cause).strip().splitlines() or [type(cause).__name__]
            text = " ".join(line.strip() for line in lines)
            if "backend found" in text:  # trainer.accelerator=gpu (or cuda, mps) where there is none
                text += " (trainer.accelerator=auto uses what the machine has; cpu runs anywhere)"
            raise PreciseInvError(f"{what}: {text}") from None
        if cause is None and isinstance(first, (TypeError, ValueError)) and target.startswith("preciseinv."):
            key = node._get_full_key(None) if hasattr(node, "_get_full_key") else ""  # e.g. method.eta=abc
            raise PreciseInvError(f"{key or target}: {first} (a value of the wrong type? check the "
                                  f"{key + '.' if key else ''}* values given on the command line)") from None
        if cause is not None:
            raise cause from None
        raise


def command_line_overrides() -> list[str] | None:
    """The overrides of the Hydra run in progress (None outside one: a composed config handed over)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return None


def check_required(cfg) -> None:
    """Values a config leaves to the command line (``???``, e.g. ``data.root`` of ``data=coco``): one line naming
    them, where OmegaConf would raise deep inside instantiation."""
    from omegaconf import OmegaConf

    missing = sorted(key for key in OmegaConf.missing_keys(cfg) if not key.startswith("hydra."))
    if missing:
        raise PreciseInvError(f"{' and '.join(missing)} must be set: add {missing[0]}=<value> to the command")


def resolve_precision(cfg, also: tuple[str, ...] = ()) -> str:
    """``trainer.precision=bf16-true`` / ``16-true`` (or a preset's ``model.precision`` of that kind): the networks'
    weights in half precision with no autocast, the solver in fp32. Lightning would also make every tensor created
    in the step half (its default dtype), eps* and the solver state included, which the residual cannot afford at
    small eta; so the weights' dtype goes to ``model.dtype`` and the run computes in 32-true. Lightning's other
    precisions (64-true, transformer-engine) are one line. Returns the compute precision (``trainer.precision``)."""
    from omegaconf import open_dict

    from preciseinv.accel.settings import TRUE_HALF, check_precision

    try:
        precision = check_precision(cfg.trainer.get("precision"), also)
    except PreciseInvError as error:
        raise PreciseInvError(f"trainer.{error}" if not also else str(error)) from None
    if precision in TRUE_HALF:
        if cfg.model.dtype not in ("float32", TRUE_HALF[precision]):
            raise PreciseInvError(f"trainer.precision={precision} stores the weights in {TRUE_HALF[precision]}, "
                                  f"but model.dtype={cfg.model.dtype}: set one of them")
        cfg.model.dtype = TRUE_HALF[precision]
        precision = "32-true"
    with open_dict(cfg):
        cfg.trainer.precision = precision
    return precision


def prepare(cfg, overrides: list[str] | None = None, precisions: tuple[str, ...] = ()) -> None:
    """Make a composed config runnable, in place: required keys set, T >= 1, a model given by path alone with its
    family preset's defaults (``overrides``: what the user set, kept; None: the keys that differ from the mini
    preset's), an exact method's sampler deterministic, and the precision rule (``precisions``: names accepted
    beside Lightning's)."""
    check_values(cfg)
    check_preset_fits(cfg.model)
    adopt_family(cfg.model, None if overrides is None else explicit_keys(overrides))
    check_exact_sampler(cfg)  # again: a family's sampler, adopted above
    if "trainer" in cfg:
        resolve_precision(cfg, precisions)


def check_values(cfg) -> None:
    """The checks of a composed config that need no model: required keys set, T >= 1, learning rates and eta > 0,
    a known timestep spacing, an exact method's sampler. ``prepare`` runs them; so does the command line's check of
    each run of a sweep, before any run starts."""
    from omegaconf import OmegaConf

    from preciseinv.solvers.loop import check_stop

    check_required(cfg)
    if "num_steps" in cfg and (type(cfg.num_steps) is not int or cfg.num_steps < 1):
        raise PreciseInvError(f"num_steps must be a whole number, at least 1, got {cfg.num_steps}; the paper's T is "
                              "num_steps=2")
    paper = "the paper's: 0.1 for SD1.4, 0.05 for LCM and SDXL, 0.025 for SD3; the model preset's by default"
    method = cfg.get("method") or {}
    rates = (("solver.lr", method.get("solver"), paper), ("retry.lr", method.get("retry"), paper),
             ("encoder.lr", cfg.get("encoder"), "default 0.2"))
    for key, node, default in rates:
        lr = node.get("lr") if hasattr(node, "get") else None
        if isinstance(lr, (int, float)) and not lr > 0:  # the run would go on, and nothing would move
            raise PreciseInvError(f"{key} must be > 0, got {lr} ({default})")
    spacing = cfg.get("timestep_spacing")
    if spacing is not None and spacing not in TIMESTEP_SPACINGS:
        raise PreciseInvError(f"timestep_spacing must be one of {', '.join(TIMESTEP_SPACINGS)}, or null (the model "
                              f"scheduler's own), got {spacing!r}")
    sampler = cfg.get("sampler")
    if sampler is not None:  # before the model loads (its sampler is built after)
        from preciseinv.samplers import SAMPLERS

        if sampler not in SAMPLERS:
            raise PreciseInvError(did_you_mean(str(sampler), SAMPLERS, f"sampler={sampler} is not a sampler; sampler "
                                                f"is one of {', '.join(SAMPLERS)}, or null (the model's own)"))
    check_retry(cfg)  # method.retry_iters is a whole number or null past it
    eta, max_iters, retry_iters = (OmegaConf.select(cfg, f"method.{k}") for k in ("eta", "max_iters", "retry_iters"))
    check_stop(eta if isinstance(eta, (int, float)) else None, max_iters if isinstance(max_iters, int) else None,
               retry_iters)
    check_exact_sampler(cfg)


def check_retry(cfg) -> None:
    """``retry=`` where it cannot do anything: given as ``method.retry=NAME`` (a name, not the solver's config), for
    a method without a second solve, repeating the solver itself from the same start (the same result again), or
    ``method.retry_iters`` without a retry."""
    from omegaconf import OmegaConf

    method, retry = cfg.get("method") or {}, OmegaConf.select(cfg, "method.retry")
    retry_iters = method.get("retry_iters")
    if retry_iters is not None and type(retry_iters) is not int:  # null by default: no type for Hydra to hold it to
        raise PreciseInvError(f"method.retry_iters takes a whole number of iterations, or null (method.max_iters), "
                              f"got {retry_iters!r}")
    if isinstance(retry, str):
        raise PreciseInvError(f"method.retry={retry}: choose the retry solver as retry={retry} (the group), not as "
                              "method.retry")
    if cfg.get("retry") is not None and "retry" not in method:
        raise PreciseInvError("retry= is a second solve of method=preciseinv; this method has none: drop retry=")
    if retry is None and retry_iters is not None:
        raise PreciseInvError("method.retry_iters is the cap of a second solve, and there is none: add retry=spectral "
                              "(or retry=adamw), or drop method.retry_iters")
    solver = method.get("solver")
    if retry is None or not OmegaConf.is_dict(solver):
        return
    first, second = (OmegaConf.to_container(node, resolve=True) for node in (solver, retry))
    if first.get("_target_") == second.get("_target_") and all(first[k] == second[k] for k in set(first) & set(second)):
        raise PreciseInvError("the retry solver is the solver itself: from the same start it finds the same "
                              "solution again; choose another retry= (or none)")


def check_exact_sampler(cfg) -> None:
    """A coupled exact method (EDICT, BDIA, BELM) with a sampler that injects noise, with fewer steps than its
    relation needs, or (BELM) from the pure-noise top of a flow schedule: one line, before anything is loaded (a
    model's own sampler, chosen once it is loaded, is checked when the method runs)."""
    from omegaconf import OmegaConf

    from preciseinv.methods import METHODS
    from preciseinv.methods.base import exact_refusal
    from preciseinv.samplers import DDPMSampler, EulerFlowSampler, LCMSampler

    coupled = {f"preciseinv.methods.{cls.__name__}": cls for cls in METHODS.values() if getattr(cls, "coupled", False)}
    method = coupled.get(OmegaConf.select(cfg, "method._target_"))
    if method is None:
        return
    sampler = OmegaConf.select(cfg, "sampler")
    if sampler in (DDPMSampler.name, LCMSampler.name):
        raise exact_refusal(method.name, sampler)
    if int(cfg.num_steps) < getattr(method, "min_steps", 1):
        raise PreciseInvError(f"method={method.name} needs num_steps >= {method.min_steps}: with one step its "
                              "relation is a plain DDIM step, not exact")
    if method.name == "belm" and sampler == EulerFlowSampler.name and not OmegaConf.select(cfg, "timesteps"):
        raise PreciseInvError("method=belm cannot invert the pure-noise top of a flow schedule (sigma = 1): give "
                              "timesteps= strictly below it")


def choice(group: str, name: str) -> str:
    """The override ``group=name`` once ``configs/<group>/<name>.yaml`` is known to exist; an unknown name is one
    line listing the known ones."""
    from pathlib import Path

    from preciseinv.presets import CONFIG_DIR

    known = sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("[a-z]*.yaml"))
    if name not in known:
        raise PreciseInvError(f"unknown {group} {name!r}; available: {', '.join(known)}")
    return f"{group}={name}"


def inverter_config(model, method="preciseinv", solver="hybrid", encoder="mean", precision: str = "32",
                    lr: float | None = None, eta: float | None = None, max_iters: int | None = None,
                    init="ddim", retry=None, retry_iters: int | None = None, **keys):
    """The config tree of the Python API's arguments (``preciseinv.api.Inverter``): the same tree the command line
    composes, its groups chosen by name (``method``, ``solver``, ``encoder``, ``init``, ``model`` for a preset
    name) and its values set (``keys``: top-level ones such as ``num_steps``, ``timesteps``, ``guidance_scale``; None
    keeps the config's). ``model``: a preset name, a hub id or directory, a ``ModelSpec``, a loaded model (its
    source is recorded) or None (the embedded model). ``init``: ``"ddim"``, or the folder ``learn_init`` wrote
    (init=learned with that path). ``retry``: None, or the solver (a ``configs/retry`` name) that solves again what
    the first leaves above eta. Objects given for method, solver, init, retry or encoder leave their group's default
    in the tree; the caller hands them to ``build_engine``."""
    import dataclasses
    import os

    from omegaconf import OmegaConf, open_dict

    from preciseinv.accel.settings import AUTOCAST
    from preciseinv.models.base import DiffusionModel
    from preciseinv.models.loading import ModelSpec

    overrides, path, explicit = ["output_dir=.", "~logger"], None, []
    if isinstance(model, (str, os.PathLike)):
        name = str(model)
        if "/" not in name and os.sep not in name and not os.path.exists(name):
            overrides.append(choice("model", name))
        else:
            path = name
    for group, value in (("method", method), ("solver", solver), ("encoder", encoder), ("retry", retry)):
        if isinstance(value, str):
            overrides.append(choice(group, value))
    learned = isinstance(init, (str, os.PathLike)) and os.path.isdir(init)
    if init == "learned" and not learned:
        raise PreciseInvError("init='learned' needs the predictor: pass init=<the folder python -m "
                              "preciseinv.learn_init wrote>")
    if isinstance(init, (str, os.PathLike)):
        overrides.append("init=learned" if learned else choice("init", str(init)))
    cfg = compose("fit", overrides)
    with open_dict(cfg):
        if learned:
            cfg.init.path = str(init)
        if isinstance(model, ModelSpec):  # used as given: none of its settings is replaced by a family preset's
            cfg.model = OmegaConf.merge(cfg.model, dataclasses.asdict(model))
            explicit += [f"model.{key}=" for key in FAMILY_KEYS]
        elif isinstance(model, DiffusionModel):  # recorded as it is loaded (what a latent file must reload)
            info = model.describe()
            if not str(model.source).startswith("embedded:"):
                cfg.model.path, cfg.model.name = str(model.source), str(model.source)
            cfg.model.dtype = info.get("dtype", "float32")
            for key in ("lora", "lora_scale", "guidance_embedding"):
                if info.get(key) is not None:
                    cfg.model[key] = info[key]
        elif path is not None:
            cfg.model.path = path
        if lr is not None:
            cfg.model.lr = lr
            explicit.append(f"model.lr={lr}")
        in_tree = None if retry is not None and not isinstance(retry, str) else retry_iters  # an object's: with it
        for key, value in (("eta", eta), ("max_iters", max_iters), ("retry_iters", in_tree)):
            if value is not None and key in cfg.method:
                cfg.method[key] = value
        for key, value in keys.items():
            if value is not None:
                cfg[key] = value
        cfg.trainer.precision = precision
    prepare(cfg, explicit, precisions=tuple(AUTOCAST))
    return cfg


def build_engine(cfg, model, **parts):
    """The ``InversionEngine`` of ``cfg.engine`` around a loaded ``model``; ``parts`` replace configured ones (a
    method, encoder or metrics object handed over by the API). Records the config that regenerates its outputs
    (``CONFIG_KEYS``) on the engine, for the latent files it writes."""
    from omegaconf import OmegaConf

    engine = instantiate(cfg.engine, **parts)(model)
    check = getattr(getattr(engine.method, "init", None), "check", None)
    if check is not None:  # a learned start trained for another model, schedule or sampler: one line, before inverting
        check(engine.model, engine.sampler)
    engine.config = {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key])
                     else cfg[key] for key in CONFIG_KEYS if key in cfg}
    if "method" in parts:  # an object the config did not build: its class is what reconstruction needs
        engine.config["method"] = {"_target_": f"{type(parts['method']).__module__}.{type(parts['method']).__name__}"}
    return engine


def engine_factory(cfg, **parts):
    """``model -> build_engine(cfg, model, **parts)``: what the Lightning module calls per rank once it has loaded
    the model (picklable, for spawned ranks)."""
    from functools import partial

    return partial(build_engine, cfg, **parts)


def file_config(meta: dict):
    """The composed config that regenerates a latent file's image: the config it stores (``engine.config``), or,
    for files written before it stored one, its metadata's model, method, sampler and schedule. The schedule is
    the file's own timesteps (any size shift included)."""
    from omegaconf import OmegaConf

    model = meta["model"]
    stored = meta.get("config") or {}
    cfg = compose("fit", ["output_dir=.", "lpips=false", "~logger"])
    with_model = stored.get("model") or {"path": model["source"], "name": str(model["source"]),
                                         "dtype": model.get("dtype", "float32"), "lora": model.get("lora"),
                                         "lora_scale": model.get("lora_scale", 1.0), "revision": model.get("revision")}
    OmegaConf.set_struct(cfg, False)
    cfg.model = OmegaConf.merge(cfg.model, with_model)
    if model.get("guidance_embedding") is not None:
        cfg.model.guidance_embedding = model["guidance_embedding"]
    # how fast the writing run went is not what regenerates the image: this machine's defaults
    cfg.model.update(compile=False, compile_scope="full", channels_last=False, cudnn_benchmark=False)
    if stored.get("method"):
        cfg.method = OmegaConf.create(stored["method"])
        cfg.method.pop("init", None)  # where the solver started is not what regenerates the image
    else:  # the method's own reconstruction (EDICT, BDIA, ceiling ...) or the sampler's
        from preciseinv.methods import METHODS, PreciseInv

        target = METHODS.get(meta.get("method"), PreciseInv)
        cfg.method = OmegaConf.create({"_target_": f"{target.__module__}.{target.__name__}"})
    cfg.num_steps = int(meta["num_steps"])
    cfg.timesteps = list(meta["schedule"]["timesteps"])
    cfg.sampler = meta.get("sampler")
    cfg.guidance_scale = float(meta.get("guidance_scale", 1.0))
    return cfg
