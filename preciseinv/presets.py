"""The config tree every entry point composes from, and the model presets (``configs/model/<name>.yaml``).

A model given by path alone (``model.path=DIR`` with no ``model=`` preset, or ``Inverter("DIR")``) takes the
inversion defaults of its family's preset, read from the pipeline class in its ``model_index.json``: a local SD1.5
directory runs as ``sd15`` does (16-mixed on a GPU, lr 0.1), an SDXL one as ``sdxl``, a FLUX.1 [dev] one as
``flux_dev`` (its guidance input), and so on; the run is named by the path.
"""

from __future__ import annotations

import os
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
    if not OmegaConf.has_resolver("folder_name"):
        OmegaConf.register_new_resolver("folder_name", folder_name)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name longer than the file system takes: no such folder
        return False


def folder_name(sweep_dir: str, text: str, limit: int = 200) -> str:
    """One folder name for a sweep's run (its overrides, ``a=1,b=x/y``): a path's slashes become ``_`` and the name
    takes a hash of the overrides (no nested folders; ``a/b`` and ``a_b`` stay apart), and a name longer than
    ``limit`` bytes keeps its start and that hash (file systems refuse names over 255 bytes). The same overrides
    always give the same name, so the same sweep resumes; a folder named the older way (the overrides as they
    are) that exists under ``sweep_dir`` is used as it is."""
    import hashlib

    text = str(text)
    if not text or "/" not in text and len(text.encode()) <= limit or _is_dir(Path(sweep_dir, text)):
        return text  # (no overrides: the sweep folder itself, as Hydra does)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    name = text.replace("/", "_").encode()[: limit - 13].decode(errors="ignore")
    return f"{name}-{digest}"


# the settings people change most, one example each (``--help``): fit's, and what edit and interpolate need first
COMMON = (("data=folder data.root=DIR", "your images (any size; data=coco data.root=DIR for COCO)"),
          ("model=sd15", "the model: a preset, or model.path=DIR / a hub id (its family's defaults)"),
          ("method=ddim", "the inversion method (preciseinv: the paper's, solved per timestep)"),
          ("solver=adamw", "how preciseinv solves each step (hybrid: the default)"),
          ("method.eta=1e-5", "the residual below which a step counts as solved"),
          ("num_steps=4", "T, the number of sampler steps"),
          ("output_dir=DIR", "where outputs go"),
          ("trainer.devices=8", "GPUs (DDP shards the dataset)"),
          ("data.batch_size=4", "images per batch (auto: the largest that fits)"),
          ("~logger", "no W&B (logger=csv or tensorboard for other loggers)"))
# config options made for some commands only (their --help lists them; a group with any lists only those)
OWN_COMMAND = {"learn_init": ("learn_init",), "edit_pairs": ("edit",), "piebench": ("fit", "edit")}
FIT_GROUPS = ("experiment", "paper_row")  # the paper's sweeps: groups of fit alone (edit inherits fit's defaults)
LOGGER_NAMES = {"wandb": "W&B", "csv": "CSV", "tensorboard": "TensorBoard"}
FIRST = {"edit": (("image=IMG source=TEXT target=TEXT", "one edit (a text-conditioned model)"),
                  ("pairs=FILE.jsonl", "many: rows of image, source, target")),
         "interpolate": (("a=IMG b=IMG", "the two images (or latent files)"),
                         ("frames=8 mode=slerp", "how many frames, slerp or lerp")),
         "learn_init": (("runs=[DIR,...]", "output_dirs of fit runs of one model to learn from"),
                        ("trainer.max_epochs=60", "the most epochs (early stopping may end it sooner)"))}


def option_of(key: str, target: str | None) -> str | None:
    """The config option whose ``_target_`` is ``target``, for the node at dotted ``key`` (its group: the key's last
    part, ``method.solver`` -> ``configs/solver``): ``ddim`` for ``preciseinv.methods.DDIMInversion``; None if none."""
    folder = Path(CONFIG_DIR) / key.rsplit(".", 1)[-1]
    if not target or not folder.is_dir():
        return None
    line = re.compile(rf"^_target_:\s*{re.escape(target)}\s*(#.*)?$", re.M)
    return next((f.stem for f in sorted(folder.glob("*.yaml")) if line.search(f.read_text())), None)


def help_text(config_name: str) -> str:
    """``python -m preciseinv.<command> --help``: the config groups with their options and defaults, and the
    settings people change most."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        choices = hydra_compose(config_name, ["output_dir=."], return_hydra_config=True).hydra.runtime.choices
    order = ("model", "data", "method", "solver", "encoder", "logger", "writer", "trainer", "experiment")
    defaults = dict(sorted(((group, choice) for group, choice in choices.items() if not group.startswith("hydra/")),
                           key=lambda item: order.index(item[0]) if item[0] in order else len(order)))
    width = max(map(len, defaults)) + 2
    lines = [f"usage: python -m preciseinv.{config_name} [group=option] [key=value] ...   (-m: a sweep of the "
             "comma-separated values)", "", "groups (default first):"]
    for group, choice in defaults.items():
        if group in FIT_GROUPS and config_name != "fit":
            continue
        options = command_options(group, config_name)
        ordered = [choice] + [o for o in options if o != choice] if choice in options else options
        lines.append(f"  {group.ljust(width)}{', '.join(ordered) if ordered else '-'}"
                     + ("  (none by default)" if choice is None else ""))
    lines += ["", "settings people change most:"]
    if config_name == "interpolate":  # one pair of images: no dataset, devices or logger
        common = [(e, w) for e, w in COMMON if e.split("=")[0] in ("model", "method", "solver", "num_steps",
                                                                   "method.eta", "output_dir")]
    elif config_name == "learn_init":  # it learns from fit runs: no dataset, model or method of its own
        resumes = "; the same command again resumes a killed training"
        common = [(e, w + (resumes if e.startswith("output_dir") else "")) for e, w in COMMON
                  if e.split("=")[0] in ("output_dir", "trainer.devices", "~logger")]
    else:  # fit and edit resume into their output_dir; edit reads its images from image= or pairs=
        common = [(e, w + ("; the same command again resumes there" if e.startswith("output_dir") else ""))
                  for e, w in COMMON if config_name == "fit" or not e.startswith("data=")]
    logger = defaults.get("logger")  # ~logger's line names what it removes
    common = [(e, f"no {LOGGER_NAMES.get(logger, logger)} logging (logger=" + " or ".join(
        o for o in _options("logger") if o != logger) + " for another)" if e == "~logger" else w) for e, w in common]
    lines += [f"  {example.ljust(36)}{what}" for example, what in (*FIRST.get(config_name, ()), *common)]
    lines += ["", f"every key and its value: python -m preciseinv.{config_name} --cfg job   "
              "(Hydra's own flags: --hydra-help)"]
    return "\n".join(lines)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("[a-z]*.yaml"))


def command_options(group: str, config_name: str) -> list[str]:
    """The options of ``group`` that ``python -m preciseinv.<config_name>`` takes: a group with an option made for
    this command alone (learn_init's data) offers only those; an option made for other commands is left out."""
    options = [o for o in _options(group) if config_name in OWN_COMMAND.get(o, (config_name,))]
    if any(OWN_COMMAND.get(o) == (config_name,) for o in options):
        options = [o for o in options if o in OWN_COMMAND]
    return options


def _check_command_options(config_name: str, argv: list[str], cfg) -> None:
    """``data=edit_pairs`` given to fit (an option made for other commands, ``OWN_COMMAND``, in a group the
    command has): one line naming the commands it is for, where the run would fail on keys only they have."""
    for group, name in (arg.lstrip("+").split("=", 1) for arg in argv if "=" in arg and arg[:1] != "~"):
        if group not in cfg or config_name in OWN_COMMAND.get(name, (config_name,)) or name not in _options(group):
            continue
        others = " or ".join(f"python -m preciseinv.{c}" for c in OWN_COMMAND.get(name, ()))
        raise PreciseInvError(f"{group}={name} is an option of {others}, not of python -m preciseinv.{config_name} "
                              f"({group} here is one of {', '.join(command_options(group, config_name))})")


# what people type for a setting whose key is spelled otherwise (the run's header line says T=2)
_ALIASES = {"t": "num_steps", "steps": "num_steps",  # where a command has the alias's key (edit: source=)
            "prompt": "source", "source_prompt": "source", "target_prompt": "target"}


def did_you_mean(name: str, candidates, then: str) -> str:
    """"did you mean X? " + ``then`` for the closest of ``candidates`` to a misspelled ``name``, else ``then``: the
    same name in other case (``adamW``), a known alias (``T``), the shortest key ending in it (``eta``:
    ``method.eta``), else the closest spelling."""
    import difflib

    candidates = list(candidates)
    lower = {c.lower(): c for c in candidates}
    suffix = sorted((c for c in candidates if c.lower().endswith("." + name.lower())), key=lambda c: c.count("."))
    alias = _ALIASES.get(name.lower())
    # the closest spelling; of equally close ones, the one sharing the longest start (sd16: sd15, not sd21)
    scored = sorted(((difflib.SequenceMatcher(None, name, c).ratio(), len(os.path.commonprefix([name, c])), c)
                     for c in candidates), reverse=True)
    spelled = [c for ratio, _, c in scored[:1] if ratio >= 0.6]
    close = ([lower[name.lower()]] if name.lower() in lower else [alias] if alias in candidates else suffix[:1]
             or spelled)
    return f"did you mean {close[0]}? {then}" if close else then


def _dotted_keys(node, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    for key in node.keys() if isinstance(node, DictConfig) else ():
        keys.append(prefix + str(key))
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            keys += _dotted_keys(child, f"{prefix}{key}.")
    return keys


def _group_choices(argv: list[str]) -> list[str]:
    """The ``group=option`` arguments of a command line (``method=edict``)."""
    return [a for a in argv if "=" in a and "." not in a.split("=", 1)[0] and Path(
        CONFIG_DIR, a.split("=", 1)[0].lstrip("+~")).is_dir()]


def _annotation(cfg, key: str) -> str:
    """The type annotation, as text, of the constructor parameter a key sets (``model.compile``: ``bool | str``),
    read from its node's ``_target_``; "" where nothing says (no _target_, not importable, no such parameter)."""
    import inspect

    from hydra.utils import get_class
    from omegaconf import OmegaConf

    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    try:
        return str(inspect.signature(get_class(str(node["_target_"]))).parameters[name].annotation)
    except Exception:  # noqa: BLE001  (nothing says)
        return ""


def _check_added_keys(overrides: list[str], cfg) -> None:
    """A key added with ``+`` (``+solver.foo=1``) to a node whose class has no such parameter: one line now, not a
    TypeError once the model has loaded (a solver, start or encoder is built late, per subproblem)."""
    import inspect

    from hydra.utils import get_class
    from omegaconf import OmegaConf

    for arg in overrides:
        key = arg.split("=", 1)[0]
        if not key.startswith("+") or "." not in key:
            continue
        parent, _, name = key.lstrip("+").rpartition(".")
        if name.startswith("_"):  # Hydra's own (_convert_, _recursive_, ...)
            continue
        node = OmegaConf.select(cfg, parent, default=None)
        target = node.get("_target_") if OmegaConf.is_dict(node) else None
        try:
            params = inspect.signature(get_class(str(target))).parameters
        except Exception:  # noqa: BLE001  (no class to ask)
            continue
        if name in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
            continue
        known = [k for k, p in params.items() if k not in ("self", "problem") and p.kind != p.VAR_POSITIONAL]
        group, cls = parent.rsplit(".", 1)[-1], str(target).rsplit(".", 1)[-1]
        option = option_of(parent, str(target))
        what = f"{group}={option}" if option and not option.startswith("_") else f"{group} ({cls})"
        hint = did_you_mean(name, known, f"{what} takes {', '.join(known) or 'no settings'}")
        raise PreciseInvError(f"{parent}.{name} is not a setting of {what}; {hint}")


def _check_types(config_name: str, overrides: list[str], cfg) -> None:
    """A number or a true/false setting given a value of another type, or a count (its constructor takes an int
    only) given a fraction: one line naming the key and what it takes (rather than a TypeError from inside the
    constructor), unless its constructor takes a string there too. The defaults are composed only when a value
    could be one: a string, a boolean, or a float where the constructor takes an int only."""
    from omegaconf import OmegaConf

    def value(node, key):
        try:
            return OmegaConf.select(node, key, default=None, throw_on_missing=False)
        except Exception:  # an interpolation that needs a Hydra run: not a plain value
            return None

    def count_only(key) -> bool:  # the parameter a key sets is annotated an int, never a float
        annotation = _annotation(cfg, key)
        return "int" in annotation and "float" not in annotation

    groups = _group_choices(overrides)
    given = {a.split("=", 1)[0].lstrip("+~"): a for a in overrides if "=" in a and a not in groups}
    values = {key: value(cfg, key) for key in given}
    suspects = {key: arg for key, arg in given.items() if isinstance(values[key], (str, bool))
                and not (isinstance(values[key], str) and "str" in _annotation(cfg, key))  # (the same class)
                or isinstance(values[key], float) and count_only(key)}
    if not suspects:
        return
    base = compose(config_name, [*groups, "output_dir=."])
    for key, arg in suspects.items():
        default, new = value(base, key), values[key]
        if isinstance(default, bool) and not isinstance(new, bool):
            raise PreciseInvError(f"{arg}: {key} takes true or false")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and not isinstance(new, (int, float)):
            raise PreciseInvError(f"{arg}: {key} takes a number (default {default})")
        if isinstance(new, float) and type(default) is int:  # a float is a suspect only where a count is taken
            write = f": write {key}={int(new)}" if new.is_integer() else ""
            raise PreciseInvError(f"{arg}: {key} takes a whole number (default {default}){write}")


def _unparsable(argv: list[str]) -> str | None:
    """The one line for the first argument Hydra's override grammar cannot read (None: every one parses): a value
    with a comma is a sweep, a list or a string; other characters of the grammar want the value quoted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for arg in argv:
        key, _, value = arg.partition("=")
        quoted = f'{key}="{value}"' if "'" in value else f"{key}='{value}'"
        try:
            override = parser.parse_overrides([arg])[0]
        except Exception:  # noqa: PERF203  (a few arguments)
            return (f"{arg}: Hydra reads characters such as = , [ ] {{ }} ( ) ~ # and quotes in a value as syntax: "
                    f"quote the value, {quoted}, as one shell argument")
        if override.is_sweep_override():  # a sweep without -m
            return (f"{arg}: a comma makes a sweep (add -m), [{value}] a list, and {quoted} (quoted, one shell "
                    "argument) a single value")
    return None


def _is_sweep(arg: str) -> bool:
    """Whether Hydra reads an override as several values (``method=ddim,ceiling``; a quoted comma is one value)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return "=" in arg and OverridesParser.create().parse_overrides([arg])[0].is_sweep_override()
    except Exception:  # not an override (a flag) or unparsable: its own line comes later
        return False


def _unquoted(value: str) -> str:
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else value


# Hydra's own command-line flags (``python -m preciseinv.fit --hydra-help``): left to Hydra; those that take the
# next word as their value (``--cfg job``)
HYDRA_VALUE_FLAGS = ("-c", "--cfg", "-p", "--package", "-i", "--info", "-cp", "--config-path", "-cn", "--config-name",
                     "-cd", "--config-dir", "--experimental-rerun", "-sc", "--shell-completion")
HYDRA_FLAGS = ("-m", "--multirun", "-c", "--cfg", "-p", "--package", "-i", "--info", "--resolve", "-cp",
               "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "--run", "--hydra-help", "--version",
               "--shell-completion", "-sc", "--experimental-rerun", "-h", "--help")


# the ways a command line asks Hydra for a sweep: its flag, or its setting
MULTIRUN = ("-m", "--multirun", "hydra.mode=MULTIRUN", "+hydra.mode=MULTIRUN", "++hydra.mode=MULTIRUN")


def check_command_line(config_name: str, argv: list[str]) -> None:
    """Compose the command's config once before Hydra does, so that a misspelled key or option, a value of the wrong
    type, a bad override or an ``output_dir`` that is a file is one line (``PreciseInvError``, with the nearest valid
    name where there is one) rather than Hydra's multi-line report. Flags (``-m``, ``--cfg``, ...) and ``hydra.*``
    overrides are Hydra's own and left to it; a ``--multirun`` sweep is checked run by run."""
    path_setting = {"fit": "data=folder data.root", "edit": "image", "interpolate": "a"}.get(config_name)
    for before, arg in zip(["", *argv], argv):
        flag = arg.split("=", 1)[0]
        bare = "=" not in arg and not arg.startswith(("-", "~")) and before not in HYDRA_VALUE_FLAGS
        if bare:  # a path, or a key whose = went missing
            if path_setting and ("/" in arg or os.path.exists(arg)):
                raise PreciseInvError(f"{arg}: settings are written key=value here: {path_setting}={arg}")
            raise PreciseInvError(f"{arg}: settings are written key=value, as one shell argument ({arg}=VALUE); "
                                  f"`python -m preciseinv.{config_name} --help` lists them")
        if arg.startswith("-") and flag not in HYDRA_FLAGS:
            name = flag.lstrip("-").replace("-", "_")
            raise PreciseInvError(f"{arg}: settings are written key=value here ({name}=...), not as --options "
                                  f"(`python -m preciseinv.{config_name} --help` lists them)")
    removed = {arg[1:].split("=", 1)[0] for arg in argv if arg.startswith("~")}
    both = [arg for arg in argv if arg[:1] not in "~+-" and arg.split("=", 1)[0] in removed]
    if both:  # Hydra drops the one silently
        key = both[0].split("=", 1)[0]
        raise PreciseInvError(f"{both[0]} with ~{key}: ~{key} removes what {both[0]} sets; give one of them")
    multirun = [arg for arg in argv if arg in MULTIRUN]
    one_dir = [arg for arg in argv if arg.startswith("output_dir=") and "${" not in arg and not _is_sweep(arg)]
    if one_dir and multirun and any(map(_is_sweep, argv)):
        raise PreciseInvError(f"{one_dir[-1]} with --multirun: every run of the sweep would write into that one "
                              "folder; drop output_dir= (each run gets its own folder under hydra.sweep.dir, which "
                              "you may set: hydra.sweep.dir=DIR)")
    experiment = [arg.split("=", 1)[1] for arg in argv if arg.lstrip("+").startswith("experiment=")]
    if experiment and _sweeps_rows(experiment[-1]) and not any(
            arg in ("-m", "--multirun", "-c", "--cfg", "-i", "--info")
            or arg.lstrip("+").startswith(("paper_row=", "hydra.mode=")) for arg in argv):  # none of its rows
        raise PreciseInvError(f"experiment={experiment[-1]} is a sweep of the paper's rows: add --multirun, or "
                              f"paper_row=ROW for one of them ({', '.join(_options('paper_row'))})")
    if multirun:  # each run of the sweep, as Hydra will compose it
        rest = [arg for arg in argv if arg not in MULTIRUN]
        other = [arg for arg in rest if arg.split("=", 1)[0] in ("--cfg", "-c", "--info", "-i", "--run", "-r")]
        if other and not any(arg in ("-m", "--multirun") for arg in argv):
            return  # hydra.mode=MULTIRUN with another flag: Hydra prints or runs what it says
        if other:
            raise PreciseInvError(f"{other[0]} with --multirun: Hydra takes one of them; drop --multirun to see one "
                                  "run's settings")
        if not any(arg.startswith("-") for arg in rest):  # other flags: Hydra's to judge
            _check_sweep(config_name, rest)
        return
    if any(arg.startswith("-") or arg.lstrip("+~").startswith("hydra.") for arg in argv):
        return  # Hydra's own flags and settings (search paths): Hydra judges the command line
    _check_one(config_name, argv)


def _sweeps_rows(experiment: str) -> bool:
    """Whether ``configs/experiment/<experiment>.yaml`` is one of the paper's sweeps (it sweeps ``paper_row``)."""
    path = Path(CONFIG_DIR, "experiment", f"{experiment}.yaml")
    return path.is_file() and re.search(r"^\s+paper_row:", path.read_text(), re.M) is not None


# hydra.* settings that do not change what a run composes (where it writes, its name): the others (a search path,
# a launcher) leave a sweep to Hydra's own checks
_HARMLESS_HYDRA = ("hydra.sweep.", "hydra.run.", "hydra.job.", "hydra.verbose", "hydra.output_subdir")


def _check_sweep(config_name: str, argv: list[str], most: int = 24) -> None:
    """Every run of a ``--multirun`` sweep (its config's ``hydra.sweeper.params``, then the command line's
    values, as Hydra's basic sweeper combines them), checked as one run is, each swept value in one run at least:
    a mistake is one line naming the run it breaks, before any run starts (Hydra's own report would come at that
    run, after the ones before it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(arg.lstrip("+~").startswith("hydra") and not arg.lstrip("+~").startswith(_HARMLESS_HYDRA)
           for arg in argv):
        return  # a search path, another launcher or sweeper: Hydra judges
    own = [arg for arg in argv if not arg.lstrip("+~").startswith("hydra.")]  # hydra.*: Hydra's own settings
    parser = OverridesParser.create()
    first = [arg for arg in own if not _is_sweep(arg)]  # the command line with each sweep's first value
    try:
        parsed = parser.parse_overrides(own)
        first = [o.get_key_element() + "=" + next(iter(o.sweep_string_iterator())) if o.is_sweep_override()
                 else arg for o, arg in zip(parsed, own)]
        params = compose(config_name, _dir_or_here(_group_choices(first)), hydra=True).hydra.sweeper.params or {}
        swept = [f"{key}={value}" for key, value in params.items()]
        keys = {o.get_key_element() for o in parsed}
        combined = [a for a, o in zip(swept, parser.parse_overrides(swept)) if o.get_key_element() not in keys] + own
        parsed = parser.parse_overrides(combined)
        values = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
                  else [arg] for o, arg in zip(parsed, combined)]
    except Exception:  # a value Hydra's parser cannot read, an option that does not exist: one run's check names it
        _check_one(config_name, first)
        return  # else Hydra's own report
    varying = {o.get_key_element() for o in parsed if o.is_sweep_override()}
    # runs enough that each swept value is in one (a mistake is in a value): the i-th value of every key, cycling
    chosen = [[vals[i % len(vals)] for vals in values] for i in range(max(map(len, values), default=1))]
    for job in chosen[:most]:
        try:
            _check_one(config_name, list(job))
        except PreciseInvError as err:
            label = ",".join(arg for arg in job if arg.split("=", 1)[0] in varying)
            fine = next((other for other in chosen[:most] if _passes(config_name, list(other))), None)
            if not label or fine is None:  # a mistake of every run
                raise
            taker = ",".join(a for a in fine if a.split("=", 1)[0] in varying)
            hint = "" if "is not a setting" not in str(err) else (
                f" (run {taker} takes it: a setting some runs have and others not needs sweeps of its own)")
            raise PreciseInvError(f"run {label} of the sweep: {err}{hint}") from None


def _passes(config_name: str, argv: list[str]) -> bool:
    try:
        _check_one(config_name, argv)
    except PreciseInvError:
        return False
    return True


def _dir_or_here(argv: list[str]) -> list[str]:
    return [*argv, *([] if any(a.startswith("output_dir=") for a in argv) else ["output_dir=."])]


def _check_one(config_name: str, argv: list[str]) -> None:
    """One run's command line: composed once, a mistake one line."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    for arg in argv:
        path = _unquoted(arg.split("=", 1)[1]) if arg.startswith("output_dir=") else None
        if path:
            _check_output_dir(path)
    try:
        cfg = compose(config_name, _dir_or_here(argv))
    except (HydraException, OmegaConfBaseException) as err:
        text = " ".join(line.strip() for line in f"{err}\n{err.__cause__ or ''}".splitlines() if line.strip())
        unknown_key = re.search(r"Could not override '([^']+)'", text)
        unknown_option = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
        if unknown_key and "not in struct" in text:
            key = unknown_key.group(1)
            known = _dotted_keys(compose(config_name, [*_group_choices(argv), "output_dir=."])) + [
                p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir() and not p.name.startswith("_")]
            hint = did_you_mean(key, known, f"`python -m preciseinv.{config_name} --cfg job` prints every setting")
            raise PreciseInvError(f"{key} is not a setting; {hint}") from None
        cannot_delete = re.search(r"Could not delete '([^']+)'", text)
        if cannot_delete:
            key = cannot_delete.group(1)
            raise PreciseInvError(f"~{key}: python -m preciseinv.{config_name} has no {key} to remove: drop "
                                  f"~{key}") from None
        if unknown_option:
            group, name = unknown_option.groups()
            options = command_options(group, config_name)
            hint = did_you_mean(name, options, f"{group} is one of {', '.join(options)}")
            raise PreciseInvError(f"{group}={name} is not an option; {hint}") from None
        bad = _unparsable(argv)
        if bad:
            raise PreciseInvError(bad) from None
        raise PreciseInvError(text or type(err).__name__) from None
    _check_command_options(config_name, argv, cfg)
    _check_added_keys(argv, cfg)
    _check_types(config_name, argv, cfg)
    from preciseinv.builder import check_values

    try:
        check_values(cfg)
    except OmegaConfBaseException as err:  # a value that refers to a key this command does not have
        raise PreciseInvError(str(err).strip().splitlines()[0]) from None


def _check_output_dir(path: str) -> None:
    """An output_dir that is a file, or below one, or below a folder this user cannot write into: one line (Hydra
    would fail making it, in a multi-line report)."""
    if "${" in path:  # an interpolation: resolved by Hydra
        return
    target = Path(os.path.abspath(path))
    above = target  # the nearest part of the path that exists
    while not above.exists() and above.parent != above:
        above = above.parent
    if above == target:
        if not target.is_dir():
            raise PreciseInvError(f"output_dir {path!r} is a file, not a folder: choose another output_dir")
        return
    why = "is a file, not a folder" if not above.is_dir() else (
        "is not writable by this user" if not os.access(above, os.W_OK | os.X_OK) else None)
    if why:
        raise PreciseInvError(f"output_dir {path!r} cannot be made: {str(above)!r} {why}; choose another output_dir")


def null_choices(config_name: str, argv: list[str]) -> list[str]:
    """``group=null`` (any case), which Hydra cannot take as a choice (a traceback), for a group of the command's
    defaults list: where the group has a ``none`` option (``retry=none``) that option, in a sweep's values too
    (``retry=null,spectral``); else no choice of the group, as ``~group`` says it (``logger=null``: no logger).
    Returns ``argv`` with those rewritten."""
    if not any("null" in arg.lower() for arg in argv):
        return argv
    groups = _default_groups(config_name)
    out = []
    for arg in argv:
        key, _, value = arg.partition("=")
        group = key.lstrip("+")
        values = ["null" if v.lower() == "null" else v for v in value.split(",")]
        if group not in groups or "null" not in values:
            out.append(arg)
        elif "none" in _options(group):
            out.append(f"{group}=" + ",".join("none" if v == "null" else v for v in values))
        else:  # a sweep over null without a none option: Hydra's to judge
            out.append(f"~{group}" if values == ["null"] else arg)
    return out


def _default_groups(config_name: str) -> set[str]:
    """The config groups a command's defaults list chooses from (``edit`` takes ``fit``'s too)."""
    from omegaconf import OmegaConf

    path = Path(CONFIG_DIR) / f"{config_name}.yaml"
    groups: set[str] = set()
    for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults", []) if path.is_file() else []:
        if isinstance(entry, str) and (Path(CONFIG_DIR) / f"{entry}.yaml").is_file():
            groups |= _default_groups(entry)
        elif isinstance(entry, dict):
            name = next(iter(entry)).removeprefix("override ").split("@")[0]
            groups |= {name} if (Path(CONFIG_DIR) / name).is_dir() else set()
    return groups


def run_dir_from_output_dir(argv: list[str]) -> list[str]:
    """A command given ``output_dir=DIR`` runs in DIR: Hydra's own record (``.hydra/``) goes there, not into a
    fresh ``outputs/<date>/<time>/`` of the working directory. Returns ``argv`` with ``hydra.run.dir=DIR`` added
    (unless it sets its own)."""
    given = [arg.split("=", 1)[1] for arg in argv if arg.startswith("output_dir=")]
    sweep = any(arg in ("-m", "--multirun") for arg in argv) or (
        given and "," in given[-1] and _unquoted(given[-1]) == given[-1])  # a quoted value is one folder
    if not given or sweep or any(arg.startswith(("hydra.run.dir=", "++hydra.run.dir=", "hydra.mode=")) for arg in argv):
        return argv  # a sweep runs in Hydra's sweep folders
    return [*argv, f"hydra.run.dir={given[-1]}"]


def gpu_or_fp32(precision: str) -> str:
    """A preset's precision where a GPU is present; 32-true on CPU (Lightning has no fp16 autocast there)."""
    import torch

    return str(precision) if torch.cuda.is_available() else "32-true"


def compose(config_name: str = "fit", overrides: list[str] | tuple = (), hydra: bool = False):
    """The composed config (a DictConfig) of ``configs/<config_name>.yaml`` with ``overrides``, outside any
    Hydra run (the API, reconstruct, the benchmarks); ``hydra``: with its ``hydra`` node."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app or an outer initialize: use that one
        return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=hydra)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=hydra)


def known_presets() -> list[str]:
    return _options("model")


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


# the network each preset runs (an LCM preset is its base model with a LoRA): a model.path of another one beside a
# preset would run with that preset's lr, resolution and sampler
ARCHITECTURE = {"mini": "a pixel DDPM", "sd14": "an SD 1.x/2.x UNet", "sd15": "an SD 1.x/2.x UNet",
                "sd21": "an SD 1.x/2.x UNet", "lcm_sd15": "an SD 1.x/2.x UNet", "sdxl": "an SDXL UNet",
                "sdxl_turbo": "an SDXL UNet", "lcm_sdxl": "an SDXL UNet", "sd3": "an SD3 transformer",
                "sd35_medium": "an SD3 transformer", "sd35_large": "an SD3 transformer",
                "flux_dev": "a FLUX transformer", "flux_schnell": "a FLUX transformer"}


def check_preset_fits(model) -> None:
    """``model=PRESET model.path=DIR`` (or an experiment's preset with one's own model): a local DIR of another
    network than the preset's is one line, before it runs with the preset's lr, resolution and sampler. (A path
    on the default, ``mini``, takes its family's preset: ``adopt_family``.)"""
    name, path = str(model.get("name")), model.get("path")
    if name == "mini" or name not in ARCHITECTURE or not path or not Path(str(path)).expanduser().is_dir() \
            or str(path) == str(preset_config(name).get("path")):
        return
    family = family_preset(Path(str(path)).expanduser(), model.get("revision"))
    if ARCHITECTURE.get(family) != ARCHITECTURE[name]:
        raise PreciseInvError(f"model.path {str(path)!r} holds {ARCHITECTURE.get(family, family)} but model={name} "
                              f"is a preset for {ARCHITECTURE[name]}: give model={family} with it (or model.path "
                              "alone, which takes its family's preset)")


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
