"""The config tree every entry point composes from, and the model presets (``configs/model/<name>.yaml``).

A model given by path alone (``model.path=DIR`` with no ``model=`` preset, or ``Inverter("DIR")``) takes the
inversion defaults of its family's preset, read from the pipeline class in its ``model_index.json``: a local SD1.5
directory runs as ``sd15`` does (16-mixed on a GPU, lr 0.1), an SDXL one as ``sdxl``, a FLUX.1 [dev] one as
``flux_dev`` (its guidance input), and so on; the run is named by the path.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from preciseinv.errors import PreciseInvError

CONFIG_DIR = str(files("preciseinv.configs"))
# what a family preset decides for any model of the family (the rest, path, LoRA and revision, is the model's own)
FAMILY_KEYS = ("lr", "num_steps", "dtype", "precision", "sampler", "guidance_embedding")


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("gpu_or_fp32"):
        OmegaConf.register_new_resolver("gpu_or_fp32", gpu_or_fp32)


def check_command_line(config_name: str, argv: list[str]) -> None:
    """Compose the command's config once before Hydra does, so that a misspelled key or option, a bad override or an
    ``output_dir`` that is a file is one line (``PreciseInvError``) rather than Hydra's multi-line report. Flags
    (``--help``, ``-m``, ...) and ``hydra.*`` overrides are Hydra's own and left to it."""
    import os

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if any(arg.startswith("-") or arg.lstrip("+~").startswith("hydra.") for arg in argv):
        return  # Hydra's own flags and settings (multirun, search paths): Hydra judges the command line
    for arg in argv:
        if arg.startswith("output_dir=") and os.path.exists(arg.split("=", 1)[1]) \
                and not os.path.isdir(arg.split("=", 1)[1]):
            raise PreciseInvError(f"output_dir {arg.split('=', 1)[1]!r} is a file, not a folder: choose another "
                                  "output_dir")
    overrides = [arg for arg in argv if not arg.lstrip("+~").startswith("hydra.")]
    try:
        compose(config_name, [*overrides, *([] if any(a.startswith("output_dir=") for a in overrides)
                                            else ["output_dir=."])])
    except (HydraException, OmegaConfBaseException) as err:
        text = " ".join(line.strip() for line in f"{err}\n{err.__cause__ or ''}".splitlines() if line.strip())
        unknown_key = re.search(r"Could not override '([^']+)'", text)
        unknown_option = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
        if unknown_key and "not in struct" in text:
            raise PreciseInvError(f"{unknown_key.group(1)} is not a setting (misspelled? `--cfg job` after the "
                                  "command prints every key; +key=value adds a new one)") from None
        if unknown_option:
            group, name = unknown_option.groups()
            options = sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("[a-z]*.yaml"))
            raise PreciseInvError(f"{group}={name} is not an option; {group} is one of {', '.join(options)}") from None
        raise PreciseInvError(text or type(err).__name__) from None


def run_dir_from_output_dir(argv: list[str]) -> list[str]:
    """A command given ``output_dir=DIR`` runs in DIR: Hydra's own record (``.hydra/``) goes there, not into a
    fresh ``outputs/<date>/<time>/`` of the working directory. Returns ``argv`` with ``hydra.run.dir=DIR`` added
    (unless it sets its own)."""
    given = [arg.split("=", 1)[1] for arg in argv if arg.startswith("output_dir=")]
    if not given or "," in given[-1] or any(arg in ("-m", "--multirun") or arg.startswith(
            ("hydra.run.dir=", "++hydra.run.dir=", "hydra.mode=")) for arg in argv):
        return argv  # a sweep runs in Hydra's sweep folders
    return [*argv, f"hydra.run.dir={given[-1]}"]


def gpu_or_fp32(precision: str) -> str:
    """A preset's precision where a GPU is present; 32-true on CPU (Lightning has no fp16 autocast there)."""
    import torch

    return str(precision) if torch.cuda.is_available() else "32-true"


def compose(config_name: str = "fit", overrides: list[str] | tuple = ()):
    """The composed config (a DictConfig) of ``configs/<config_name>.yaml`` with ``overrides``, outside any
    Hydra run (the API, reconstruct, the benchmarks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app or an outer initialize: use that one
        return hydra_compose(config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides))


def known_presets() -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("[a-z]*.yaml"))


def preset_config(name: str):
    """The ``model`` node of the preset ``name`` (a DictConfig)."""
    from hydra.errors import MissingConfigException

    try:
        return compose("fit", [f"model={name}", "output_dir=."]).model
    except MissingConfigException:
        raise PreciseInvError(f"unknown model preset {name!r}; known presets: {', '.join(known_presets())}") from None


def preset(name: str):
    """The preset ``name`` as a ``ModelSpec``."""
    from hydra.utils import instantiate

    return instantiate(preset_config(name))


def family_preset(path, revision: str | None = None) -> str:
    """The preset whose defaults fit the model at ``path`` (hub id or diffusers directory), from its pipeline
    class and configs (no weights are read)."""
    from preciseinv.models.loading import model_configs

    index, config = model_configs(path, revision)
    pipeline = index.get("_class_name", "")
    scheduler = config("scheduler", "scheduler_config.json") if "scheduler" in index else {}
    if pipeline in ("DDPMPipeline", "DDIMPipeline"):
        return "mini"
    if pipeline == "StableDiffusionPipeline":
        return "sd21" if scheduler.get("prediction_type") == "v_prediction" else "sd15"
    if pipeline == "LatentConsistencyModelPipeline":
        return "lcm_sd15"
    if pipeline == "StableDiffusionXLPipeline":
        return "sdxl_turbo" if scheduler.get("timestep_spacing") == "trailing" else "sdxl"
    if pipeline == "StableDiffusion3Pipeline":
        return "sd35_medium" if scheduler.get("use_dynamic_shifting") else "sd3"
    if pipeline == "FluxPipeline":
        return "flux_dev" if config("transformer").get("guidance_embeds") else "flux_schnell"
    raise PreciseInvError(f"model.path {str(path)!r} holds a {pipeline or 'pipeline of no class'}, which preciseinv "
                          "does not support")


def adopt_family(model, explicit: set[str] | None = None) -> str | None:
    """A ``model`` config node given by path on the mini preset (``model.path=DIR`` without ``model=``) takes its
    family preset's ``FAMILY_KEYS``, except those in ``explicit`` (the keys the user set; None: those that differ
    from the mini preset's), and the path as its name. Returns the family preset's name, or None when the node is
    a preset of its own or the embedded model. Mutates ``model`` in place."""
    from omegaconf import open_dict

    if model.get("name") != "mini" or not model.get("path"):
        return None
    family = family_preset(model.path, model.get("revision"))
    mini, chosen = preset_config("mini"), preset_config(family)
    if explicit is None:
        explicit = {key for key in FAMILY_KEYS if model.get(key) != mini.get(key)}
    with open_dict(model):
        for key in FAMILY_KEYS:
            if key not in explicit:
                model[key] = chosen.get(key)
        model.name = str(model.path)
    return family


def explicit_keys(overrides, node: str = "model") -> set[str]:
    """The keys of ``node`` that command-line overrides set (``model.lr=0.2`` -> {"lr"})."""
    out = set()
    for item in overrides:
        key = str(item).split("=", 1)[0].lstrip("+~")
        if key.startswith(node + "."):
            out.add(key[len(node) + 1:].split(".", 1)[0])
    return out
