"""``python -m preciseinv.interpolate a=IMG_OR_LATENT b=IMG_OR_LATENT [frames=8] [mode=slerp|lerp]``.

Inverts whichever endpoint is an image (a ``.safetensors`` latent file is used as is, with the prompt it was
inverted with unless ``prompt=`` is given), then decodes ``frames``
points on the slerp (default) or lerp path between the two x*_T. Writes ``frames/frame_NNN.png``, ``strip.png``
and ``interpolation.gif`` under ``output_dir``. Slerp keeps the latents' norm (a Gaussian's typical shell), which
is why the paper uses it; lerp shrinks the middle frames' norm by up to 1/sqrt(2). With the lcm and ddpm
samplers each step's injected noise map travels the same path between the two inversions' maps, and with
method=edict / bdia / belm the second (companion) state does, so both ends are still exact reconstructions.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from preciseinv import console, preemption
from preciseinv.builder import command_line_overrides, prepare
from preciseinv.errors import PreciseInvError, PreciseInvWarning
from preciseinv.presets import CONFIG_DIR


def is_latent(spec) -> bool:
    return str(spec).endswith(".safetensors")


def decode_settings(meta: dict) -> dict:
    """What a latent file's x*_T means: the model, sampler, schedule, method and guidance that regenerate it."""
    return {"model": meta["model"]["source"], "sampler": meta.get("sampler"), "num_steps": meta["num_steps"],
            "timesteps": list(meta["schedule"]["timesteps"]), "method": meta.get("method"),
            "guidance_scale": meta.get("guidance_scale", 1.0)}


def file_settings(cfg) -> dict | None:
    """The settings of the latent-file endpoints (None when both are images); two files inverted under different
    settings are one line naming each difference: a path between them means nothing to either schedule."""
    from preciseinv.outputs import load_latent

    found = {name: decode_settings(load_latent(spec)[1]) for name, spec in (("a", cfg.a), ("b", cfg.b))
             if is_latent(spec) and Path(spec).is_file()}
    if len(found) == 2 and found["a"] != found["b"]:
        diff = "; ".join(f"{key} {found['a'][key]} against {found['b'][key]}" for key in found["a"]
                         if found["a"][key] != found["b"][key])
        raise PreciseInvError(f"a and b were inverted under different settings ({diff}): interpolate latents made "
                              "with the same settings, or pass the images")
    return next(iter(found.values()), None)


def endpoint(inverter, spec: str, prompt: str):
    """(x*_T (1, C, h, w), its preprocessed image or None, its step noises, its companion state or None) for an
    image path or a latent file."""
    if is_latent(spec):
        from preciseinv.outputs import load_latent, stored_noises

        tensors, meta = load_latent(spec)
        if meta["model"]["source"] != inverter.model.source:
            raise PreciseInvError(f"{spec} was inverted with model {meta['model']['source']}, not "
                                  f"{inverter.model.source}: pass model.path={meta['model']['source']}")
        coupled = getattr(inverter.engine.method, "coupled", False)
        if ("companion" in tensors) != coupled:  # x*_T alone is not what a coupled sampler starts from, nor back
            states = "two coupled states" if "companion" in tensors else "one state"
            raise PreciseInvError(f"{spec} was inverted with method={meta.get('method')} ({states}): interpolate it "
                                  f"with method={meta.get('method')}")
        device = inverter.model.device
        companion = tensors["companion"][None].to(device) if coupled else None
        return tensors["latent"][None].to(device), None, stored_noises(tensors, meta["num_steps"]), companion
    if not Path(spec).exists():
        raise PreciseInvError(f"{spec!r}: no such file (an endpoint is an image file or a .safetensors latent file)")
    if not Path(spec).is_file():
        raise PreciseInvError(f"{spec!r} is neither an image file nor a .safetensors latent file")
    inversion = inverter.invert([spec], [prompt])
    return inversion.latents, inversion.images, inversion.result.noises, inversion.result.companion


def file_prompts(cfg) -> dict[str, str]:
    """The prompt each latent-file endpoint was inverted with, by endpoint name (a, b)."""
    from preciseinv.outputs import load_latent

    return {name: load_latent(spec)[1].get("prompt") or "" for name, spec in (("a", cfg.a), ("b", cfg.b))
            if is_latent(spec) and Path(spec).is_file()}


def run(cfg) -> dict:
    from PIL import Image

    from preciseinv.api import Inverter
    from preciseinv.outputs.images import save_png

    prepare(cfg, command_line_overrides())
    if cfg.frames < 2:
        raise PreciseInvError(f"frames must be at least 2, got {cfg.frames}")
    if cfg.mode not in ("slerp", "lerp"):
        raise PreciseInvError(f"mode must be slerp or lerp, got {cfg.mode!r}")
    out = Path(cfg.output_dir)
    stored = file_settings(cfg)  # a latent file's schedule and sampler decode both ends (an image is inverted so)
    if stored is not None:
        from omegaconf import open_dict

        with open_dict(cfg):
            for key in ("num_steps", "timesteps", "sampler", "guidance_scale"):
                cfg[key] = stored[key]
    stored_prompts = file_prompts(cfg)
    if not cfg.prompt and len(set(stored_prompts.values())) == 1:  # a latent file regenerates with its own prompt
        cfg.prompt = next(iter(stored_prompts.values()))
    elif not cfg.prompt and stored_prompts:
        said = ", ".join(f"{name}: {text!r}" for name, text in stored_prompts.items())
        raise PreciseInvError(f"a and b were inverted with different prompts ({said}): give the frames' one, "
                              "prompt='...'")
    for name, text in stored_prompts.items():
        if text != cfg.prompt:
            warnings.warn(f"{name} was inverted with prompt {text!r}: with prompt={cfg.prompt!r} its end frame is not "
                          "its reconstruction", PreciseInvWarning, stacklevel=1)
    inverter = Inverter.from_config(cfg, cfg.device)
    (a, image_a, noises_a, companion_a), (b, image_b, noises_b, companion_b) = (
        endpoint(inverter, cfg.a, cfg.prompt), endpoint(inverter, cfg.b, cfg.prompt))
    frames = inverter.interpolate(a, b, cfg.frames, cfg.mode, cfg.prompt, noises_a, noises_b,
                                  companion_a, companion_b)  # (N, 3, H, W)
    for i, frame in enumerate(frames):
        save_png(out / "frames" / f"frame_{i:03d}.png", frame)
    save_png(out / "strip.png", frames.permute(1, 2, 0, 3).flatten(2))  # (3, H, N W): the frames side by side
    pil = [Image.open(out / "frames" / f"frame_{i:03d}.png") for i in range(len(frames))]
    pil[0].save(out / "interpolation.gif", save_all=True, append_images=pil[1:] + pil[-2:0:-1], duration=120, loop=0)
    report = {"frames": len(frames), "mode": cfg.mode, "a": str(cfg.a), "b": str(cfg.b), "output_dir": str(out)}
    metrics = inverter.engine.metrics
    if metrics is not None:  # the path's endpoints are the two reconstructions
        for name, image, frame in (("a", image_a, frames[0]), ("b", image_b, frames[-1])):
            if image is not None:
                report[f"psnr_{name}"] = metrics(frame[None], image.to(frame.device))["psnr"].item()
    (out / "interpolation.json").write_text(json.dumps(report, indent=2))
    return report


def main() -> None:
    with console.interruptible(resumable=False):  # Ctrl-C from the first import on: one line
        _command()


def _command() -> None:
    import hydra

    console.command_line("interpolate")

    @hydra.main(config_path=CONFIG_DIR, config_name="interpolate", version_base="1.3")
    def _main(cfg) -> None:
        preemption.command_started()  # a Ctrl-C while the libraries started stops here
        try:
            report = run(cfg)
        except PreciseInvError as err:
            console.drop_unused_run_dir(cfg.output_dir)  # a mistake leaves no folder behind
            console.fail(err)
        except KeyboardInterrupt:  # nor a Ctrl-C before the first frame is written
            console.drop_unused_run_dir(cfg.output_dir)
            raise
        print(console.table([("frames", str(report["frames"])), ("mode", report["mode"]),
                             ("PSNR a", console.fmt(report.get("psnr_a"), ".2f")),
                             ("PSNR b", console.fmt(report.get("psnr_b"), ".2f"))]))
        print(f"outputs in {report['output_dir']}: strip.png, interpolation.gif, frames/, interpolation.json")

    _main()


if __name__ == "__main__":
    main()
