"""``python -m preciseinv.learn_init runs=[DIR,...] output_dir=OUT``: learn where each step's solver should start.

From the latent files of finished fit runs (method=preciseinv) of one model, it trains the start predictor
(``configs/predictor``) with Lightning's ``Trainer.fit`` (``configs/trainer/learn_init.yaml``: DDP by
``trainer.devices``; ``configs/callbacks/learn_init.yaml``: checkpoints and early stopping on the held-out start
residual) and writes OUT: ``predictor.safetensors`` (the weights), ``predictor.json`` (the identity of the model it
serves: source, state shape, sampler, timesteps; the network's config; the training's figures) and ``config.yaml``
(this run's resolved config). ``python -m preciseinv.fit init=learned init.path=OUT`` then starts there.
Rerunning the same command resumes a killed training from ``OUT/checkpoints/last.ckpt``.

``run(cfg)`` does the work and is what tests call; ``main`` is the Hydra wrapper (one line and exit 2 on a
``PreciseInvError``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from preciseinv import console, preemption
from preciseinv.builder import check_required, instantiate
from preciseinv.errors import PreciseInvError
from preciseinv.presets import CONFIG_DIR

RESUME_KEYS = ("runs", "seed", "data", "predictor", "module")  # what a resumed training must share with its start


def check_resumable(output_dir: Path, config: dict) -> None:
    """A training stopped in ``output_dir`` resumes only with the same runs, data split, network and optimiser; a
    finished one is returned as it is only to the same command (other runs into its folder: another predictor)."""
    from preciseinv.inits.predictor import INFO
    from preciseinv.outputs.run_record import differences, short

    record = output_dir / "config.yaml"
    if not record.is_file() or not ((output_dir / "checkpoints").is_dir() or (output_dir / INFO).is_file()):
        return
    from omegaconf import OmegaConf

    before = OmegaConf.to_container(OmegaConf.load(record), resolve=True)
    diffs = [f"{k}={short(b)} there, {short(a)} now" for key in RESUME_KEYS if before.get(key) != config.get(key)
             for k, b, a in differences(key, before.get(key), config.get(key))]
    if diffs:
        raise PreciseInvError(f"output_dir {str(output_dir)!r} holds a training with other settings "
                              f"({'; '.join(diffs[:3])}): rerun it with the same settings to resume it, or choose "
                              "another output_dir")


def network_config(cfg, identity: dict) -> dict:
    """The predictor's constructor arguments, complete (what ``predictor.json`` stores to rebuild it)."""
    from omegaconf import OmegaConf

    C, h, w = identity["state_shape"]
    node = {k: v for k, v in OmegaConf.to_container(cfg.predictor, resolve=True).items() if k != "_partial_"}
    return {**node, "in_channels": 2 * C, "out_channels": C, "state_size": [h, w]}


def fit_command(info: dict, output_dir) -> str:
    """The fit command that starts from this predictor: the model (with its LoRA), sampler and number of steps it
    was trained for (other settings of the runs it learned from, e.g. timestep_spacing, are repeated as they were
    given)."""
    import shlex

    trained = info.get("identity") or {}
    source = str(trained.get("source") or "")
    parts = [] if not source or source.startswith("embedded:") else [f"model.path={shlex.quote(source)}"]
    lora = trained.get("lora") or {}
    if lora.get("lora"):
        parts += [f"model.lora={shlex.quote(str(lora['lora']))}", f"model.lora_scale={lora.get('lora_scale', 1.0):g}"]
    parts += [f"sampler={trained['sampler']}"] if trained.get("sampler") else []
    parts += [f"num_steps={len(trained['timesteps'])}"] if trained.get("timesteps") else []
    return " ".join(["python -m preciseinv.fit", *parts, "init=learned", f"init.path={shlex.quote(str(output_dir))}"])


def run(cfg) -> dict:
    """Train the start predictor on ``cfg.runs``' inversions into ``cfg.output_dir``; return what predictor.json
    holds (on rank 0; ``{}`` on the others)."""
    import lightning.pytorch as pl
    import torch
    from omegaconf import OmegaConf

    from preciseinv.datamodules.inversions import scan_runs
    from preciseinv.inits.predictor import INFO, save_predictor
    from preciseinv.outputs.atomic import atomic_write_bytes
    from preciseinv.outputs.run_record import first_process

    check_required(cfg)
    start = time.perf_counter()
    output_dir = Path(cfg.output_dir)
    runs = [str(run) for run in (cfg.runs if OmegaConf.is_config(cfg.runs) else [cfg.runs])]  # runs=DIR: one
    config = OmegaConf.to_container(cfg, resolve=True)
    check_resumable(output_dir, config)
    if (output_dir / INFO).is_file():  # a finished training: nothing to resume (and no latent file to read)
        info = json.loads((output_dir / INFO).read_text())
        if first_process():
            print(f"a predictor is already trained in {output_dir}: {fit_command(info, output_dir)}")
        return info
    scan = scan_runs(runs)
    if first_process() and scan.skipped_line():
        print(scan.skipped_line(), flush=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    network = network_config(cfg, scan.identity)
    net = instantiate(cfg.predictor)(**{k: network[k] for k in ("in_channels", "out_channels", "state_size")})
    datamodule = instantiate(cfg.data, scan=scan, cache=str(output_dir / "pairs.pt"))
    module = instantiate(cfg.module, net=net, scan=scan)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(output_dir / "config.yaml", OmegaConf.to_yaml(config).encode())
        shape = "x".join(map(str, scan.identity["state_shape"]))
        print(f"preciseinv: learn_init model={scan.identity['source']} sampler={scan.identity['sampler']} "
              f"timesteps={[int(t) if float(t).is_integer() else t for t in scan.identity['timesteps']]} "
              f"state={shape} inversions={len(scan.files)} output_dir={output_dir}", flush=True)
    last = output_dir / "checkpoints" / "last.ckpt"
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.is_file() else None)
    except SystemExit:
        if trainer.interrupted:  # Lightning ends its own Ctrl-C handling with exit(1): the command's one line
            raise KeyboardInterrupt from None
        raise
    if not trainer.is_global_zero:
        return {}
    checkpoint = trainer.checkpoint_callback
    best = Path(checkpoint.best_model_path) if checkpoint and checkpoint.best_model_path else last
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    # of the trained steps (the others' DDIM starts all met eta), those whose held-out solves the prediction made
    # cheaper: what init=learned starts from (init.steps=all: every trained step)
    from preciseinv.inits import LearnedStart
    from preciseinv.inits.judge import judge_steps

    trained_steps, engine = datamodule.steps, module.engine
    learned = LearnedStart(output_dir, net=net, info={"identity": scan.identity, "steps": trained_steps})
    judged = judge_steps(engine.method, engine, learned, trained_steps, datamodule.pairs, datamodule.held_out_rows,
                         batch_size=datamodule.batch_size)
    info = {"identity": scan.identity,
            "network": network,
            "steps": [k for k in trained_steps if judged.get(k, {}).get("kept")],
            "trained_steps": trained_steps,
            "judged": {str(k): v for k, v in judged.items()},
            "trained": {"runs": runs, **datamodule.counts, "epochs": trainer.current_epoch,
                        "best_val_residual": float(checkpoint.best_model_score) if checkpoint and
                        checkpoint.best_model_score is not None else None, "last": metrics,
                        "parameters": sum(p.numel() for p in net.parameters()),
                        "seconds": round(time.perf_counter() - start, 1)}}
    save_predictor(output_dir, net, info)
    return json.loads((output_dir / INFO).read_text())


def summary_table(info: dict) -> str:
    """What the training reached, as a table: the held-out residual of the predicted start (best epoch) against the
    DDIM start's, and per trained step the held-out solves from each start and which was kept."""
    trained, last = info["trained"], info["trained"].get("last") or {}

    def sci(value) -> str:
        return "-" if value is None else f"{value:.3e}"

    better = last.get("val/learned_better")
    rows = [("images", str(trained["images"])), ("val images", str(trained["val_images"])),
            ("pairs", str(trained["train_pairs"] + trained["val_pairs"])), ("epochs", str(trained["epochs"])),
            ("val residual, best epoch", sci(trained["best_val_residual"])),
            ("DDIM start's", sci(last.get("val/residual_ddim"))),
            ("learned better, last epoch", "-" if better is None else f"{better:.0%}")]
    for k, judged in (info.get("judged") or {}).items():  # the held-out solves from each start
        if not judged["pairs"]:
            rows.append((f"step {int(k) + 1} val solves", "no held-out pairs: DDIM start kept"))
            continue
        ddim, learned = judged["ddim"], judged["learned"]
        rows.append((f"step {int(k) + 1} val solves", f"cost {ddim['cost']:.1f} -> {learned['cost']:.1f}, converged "
                     f"{ddim['converged']:.0%} -> {learned['converged']:.0%}, saves {judged['saved']:.1f} "
                     f"(less 2 s.e.: {judged['saved_low']:.1f}): "
                     f"{'learned start kept' if judged['kept'] else 'DDIM start kept'}"))
    if trained.get("above_unsolved"):
        rows.append(("left out", f"{trained['above_unsolved']} steps above one the run left unsolved"))
    if trained.get("repeated"):
        rows.append(("repeated", f"{trained['repeated']} inversions of an image another run holds too: learned once"))
    rows.append(("learned steps", ", ".join(str(k + 1) for k in info["steps"]) or "none: init=learned is init=ddim"))
    return console.table(rows + [("seconds", f"{trained['seconds']:.0f}")])


def main() -> None:
    with console.interruptible(lambda: preemption.resume_hint("the last epoch's checkpoint is kept") + " the training"):
        _command()  # Ctrl-C from the first import on: one line


def _command() -> None:
    import hydra

    console.command_line("learn_init")

    @hydra.main(config_path=CONFIG_DIR, config_name="learn_init", version_base="1.3")
    def _main(cfg) -> None:
        preemption.command_started()  # a Ctrl-C while the libraries started stops here
        preemption.note_run_folder()  # what the hint says resumes it
        try:
            with console.quiet(bool(cfg.get("verbose", False))):
                info = run(cfg)
        except PreciseInvError as err:
            console.drop_unused_run_dir(cfg.output_dir)  # a mistake leaves no folder behind
            console.fail(err)
        except OSError as err:
            line = console.disk_error(err, cfg.output_dir)
            if line is None:
                raise
            console.fail(line)
        if info.get("trained"):
            print(summary_table(info))
            print(f"predictor in {cfg.output_dir}: {fit_command(info, cfg.output_dir)}", file=sys.stdout)

    _main()


if __name__ == "__main__":
    main()
