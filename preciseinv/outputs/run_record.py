"""``run.json``: the resolved config of the run that owns an output_dir, and the check that a rerun resumes it with
the same settings."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from preciseinv.errors import PreciseInvError
from preciseinv.outputs.atomic import atomic_write_bytes


RANK_VARIABLES = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")  # Lightning's order (torchrun, SLURM, LSF)


def first_process() -> bool:
    """Global rank 0, before Lightning has set up the ranks: from the launcher's environment (``RANK``,
    ``SLURM_PROCID``; else local rank 0 of node 0, as Lightning's own launcher numbers its children)."""
    for name in RANK_VARIABLES:
        if name in os.environ:
            return int(os.environ[name]) == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


# Settings that change what a latent means: a rerun into an output_dir must keep them to resume it.
# Which images, too: an id names an image only within one dataset (a.png of another folder is another image).
RESUME_KEYS = (("model", "path"), ("model", "dtype"), ("model", "lora"), ("model", "guidance_embedding"), ("method",),
               ("encoder",), ("num_steps",), ("sampler",), ("timestep_spacing",), ("timesteps",), ("guidance_scale",),
               ("data", "resolution"), ("data", "crop"), ("data", "max_side"), ("data", "prompt"),
               ("data", "_target_"), ("data", "root"), ("data", "urls"), ("data", "split"),
               ("edit_guidance_scale",))  # the edit command's regeneration (its rows' prompts: per row, EditRows)


def short(value, limit: int = 60) -> str:
    """A setting's value for a one-line message (a method's config node: its class and the values that differ are
    what matter; long ones are cut)."""
    text = json.dumps(value) if isinstance(value, (dict, list)) else "null" if value is None else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def differences(key: str, before, now, option=None):
    """(dotted key, value there, value now) of each leaf that differs (a whole value where the shapes differ). A node
    whose ``_target_`` differs is another choice as a whole: one difference, named as on the command line where
    ``option(key, target)`` knows both config options (``solver``: ``hybrid`` there, ``adamw`` now), else by class."""
    targets = [node.get("_target_") if isinstance(node, dict) else None for node in (before, now)]
    if all(targets) and targets[0] != targets[1]:
        names = [option(key, t) for t in targets] if option else [None, None]
        yield (key.rsplit(".", 1)[-1], *names) if all(names) else (key, *targets)
    elif isinstance(before, dict) and isinstance(now, dict):
        for k in sorted(set(before) | set(now), key=str):
            if before.get(k) != now.get(k):
                yield from differences(f"{key}.{k}", before.get(k), now.get(k), option)
    else:
        yield key, before, now


FOLDER, SAMPLES = (f"preciseinv.datamodules.folder.{name}" for name in ("FolderDataModule", "SampleImages"))


def read_record(path: Path) -> dict | None:
    """A JSON object file of a run (run.json, summary.json); None where it is missing or unreadable."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def recorded_settings(output_dir: Path) -> dict | None:
    """The settings of the run that owns ``output_dir``: its ``run.json``, else (that file lost or unreadable) the
    config its ``summary.json`` keeps; None where neither says."""
    run = read_record(Path(output_dir) / "run.json")
    config = run if run is not None else (read_record(Path(output_dir) / "summary.json") or {}).get("config")
    return config if isinstance(config, dict) else None


def check_resumable(output_dir: Path, config: dict, option=None, finished: bool = True,
                    own: Callable[[str], Any] | None = None) -> None:
    """Refuse to mix runs with different settings in one folder: the run that owns it (``run.json``, which the
    writer callback writes at the start of prediction, ``start_record``; that file lost, ``summary.json``'s config)
    must have the same ``RESUME_KEYS``. ``option(key, target)``: the config option of a node's class, to name a
    changed choice as the command line does. ``finished``: the folder holds a record of some sample (finished or
    failed); a run that stopped before its first (a setting refused as the model loaded, an interrupt) owns nothing,
    and the next run's settings replace its run.json. ``own(key)``: what a null setting stands for (``sampler``:
    the model's own), so that naming it is no change; asked only where one side is null and the other is not. A
    folder with recorded samples but neither record is refused: it cannot tell what they were made with."""
    if not finished:
        return

    def pick(cfg: dict) -> dict:
        out = {}
        for path in RESUME_KEYS:
            node = cfg
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            out[".".join(path)] = node
        if isinstance(out["method"], dict):  # where each step's solver starts (init=) does not change what a latent
            # means, nor does a second solve of what the first left above eta (retry=): a rerun may switch them
            out["method"] = {k: v for k, v in out["method"].items() if k not in ("init", "retry", "retry_iters")}
        if isinstance(out["data.root"], str):  # imgs/, ./imgs, ~/imgs and /home/me/imgs name one folder (fit records
            out["data.root"] = os.path.abspath(os.path.expanduser(out["data.root"]))  # it absolute: any cwd)
        out["data"] = {"_target_": out.pop("data._target_")}  # a kind of dataset is named by its option (data=coco)
        if out["data"]["_target_"] == FOLDER and out["data.root"] is None:  # the shipped images, recorded before
            out["data"]["_target_"] = SAMPLES  # data=samples had a class of its own
        return out

    settings = recorded_settings(output_dir)
    if settings is None:
        raise PreciseInvError(f"output_dir {str(output_dir)!r} holds finished samples but no readable run.json (nor "
                              "summary.json) saying which settings made them: restore it, or choose another "
                              "output_dir")
    before, now = pick(settings), pick(config)
    for key in now:  # null on one side only: the value it stands for there
        if own is not None and (before.get(key) is None) != (now[key] is None):
            side = before if before.get(key) is None else now
            side[key] = own(key)
    changed = [k for k in now if before.get(k) != now[k]]
    if "data" in changed:  # another kind of dataset: its root, urls and split differ with it
        changed = [k for k in changed if k not in ("data.root", "data.urls", "data.split")]
    if changed:
        hint = " (trainer.precision=bf16-true or 16-true sets model.dtype)" if "model.dtype" in changed else \
            " (a dataset that moved: give its old path, e.g. through a link)" if "data.root" in changed and \
            "data" not in changed else ""
        diffs = [f"{k}={short(b)} there, {short(a)} now" for key in changed
                 for k, b, a in differences(key, before.get(key), now[key], option)]
        what = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise PreciseInvError(f"output_dir {str(output_dir)!r} holds a run with other settings ({what}){hint}; "
                              "rerun with the same settings to resume it, or choose another output_dir")


HYDRA, KEPT = ".hydra", "run"  # Hydra's record of a command (config, hydra, overrides), and this run's copy of it
_COMMAND_RECORD: dict[Path, dict[str, bytes]] = {}  # this command's folder -> its .hydra/*.yaml as it started


def _hydra_files(output_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((Path(output_dir) / HYDRA).glob("*.yaml"))}


def note_command_record(output_dir: Path) -> None:
    """Read Hydra's record of this command (``.hydra/*.yaml``, written just before the command's code runs): what
    ``start_record`` keeps as the run's own, whatever another command started in the folder since wrote there."""
    _COMMAND_RECORD.clear()
    _COMMAND_RECORD[Path(output_dir).resolve()] = _hydra_files(output_dir)


def start_record(path: Path, config: dict, resolved: dict) -> None:
    """``run.json`` as a run starts predicting: its settings and what it resolved at start (``batch_size`` from
    auto, the start-up seconds); the previous run's ``resolved`` and ``last_run`` go. Hydra's record of the command
    (as noted when it started, else ``.hydra/*.yaml`` now) is copied to ``.hydra/run/``: the record of the run
    that owns the folder, put back by ``restore_hydra_record`` when a later command there is refused."""
    path = Path(path)
    atomic_write_bytes(path, json.dumps({**config, "resolved": dict(resolved)}, indent=2).encode())
    record = _COMMAND_RECORD.get(path.parent.resolve()) or _hydra_files(path.parent)
    for name, data in record.items():
        atomic_write_bytes(path.parent / HYDRA / KEPT / name, data)


def restore_hydra_record(output_dir: Path) -> None:
    """A command refused or stopped before it started in a folder another run owns: Hydra has already rewritten
    ``.hydra/`` with this command's settings; the owner's record (``.hydra/run/``) goes back in its place (a folder
    whose run started before runs kept that copy has none to put back)."""
    kept = Path(output_dir) / HYDRA / KEPT
    if not first_process() or not kept.is_dir():
        return
    for source in sorted(kept.glob("*.yaml")):
        atomic_write_bytes(Path(output_dir) / HYDRA / source.name, source.read_bytes())


LAST_RUN_KEYS = ("resolved", "last_run")  # what one run settled at start and measured: not its successors'


def record_resolved(path: Path, values: dict, key: str = "resolved", replace: bool = False) -> None:
    """Add what a run resolved at start (e.g. ``batch_size`` from ``auto``) to run.json, under ``resolved`` (or
    what it measured, under ``key``; ``replace``: the whole entry). Nothing without a run.json (no ``fit`` run)."""
    path = Path(path)
    record = read_record(path)
    if record is None:
        return
    if replace:
        record[key] = dict(values)
    else:
        record.setdefault(key, {}).update(values)
    atomic_write_bytes(path, json.dumps(record, indent=2).encode())


def forget_last_run(output_dir: Path) -> None:
    """A rerun starts: the previous run's ``resolved`` and ``last_run`` leave run.json (a rerun that finds nothing
    to do, or one stopped before its end, must not show them as its own)."""
    path = Path(output_dir) / "run.json"
    record = read_record(path) if first_process() else None
    if record is not None and any(key in record for key in LAST_RUN_KEYS):
        atomic_write_bytes(path, json.dumps({k: v for k, v in record.items() if k not in LAST_RUN_KEYS},
                                            indent=2).encode())


def steady_rate(marks: list[tuple[float, int]]) -> float | None:
    """Images per second from (time, images) marks at each batch's end: the images of batches 2..N over the time
    from batch 1's end to batch N's: the first batch (start-up, the batch probe, its compile) left out, as are
    leading and trailing batches of unreadable inputs only; None with fewer than two batches to measure between."""
    while marks and marks[0][1] == 0:
        marks = marks[1:]
    while marks and marks[-1][1] == 0:
        marks = marks[:-1]
    if len(marks) < 2 or marks[-1][0] <= marks[0][0]:
        return None
    return sum(n for _, n in marks[1:]) / (marks[-1][0] - marks[0][0])
