"""``python -m preciseinv.reconstruct``: each latent file's image is what the run's recon/ holds."""

import contextlib

import numpy as np
import pytest
from PIL import Image

from preciseinv.reconstruct import main


def test_reconstruct_equals_the_runs_recon(fit_in_process, tmp_path, capsys):
    run = tmp_path / "run"
    fit_in_process("method=ddim", "~logger", "lpips=false", f"output_dir={run}")
    files = sorted((run / "latents").glob("*.safetensors"))
    assert len(files) == 4
    main([*map(str, files), f"output_dir={tmp_path / 'out'}", "device=cpu"])
    assert "4 image(s)" in capsys.readouterr().out
    for path in files:
        ours = np.asarray(Image.open(tmp_path / "out" / f"{path.stem}.png"))
        theirs = np.asarray(Image.open(run / "recon" / f"{path.stem}.png"))
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1, path  # batch 8 vs 1: float rounding
    # one damaged file among others: the others are written, the damaged one listed, exit status 1
    damaged = tmp_path / "damaged" / files[1].name
    damaged.parent.mkdir()
    damaged.write_bytes(files[1].read_bytes()[:100])
    with pytest.raises(SystemExit) as exit_:
        main([str(files[0]), str(damaged), str(files[2]), f"output_dir={tmp_path / 'again'}", "device=cpu"])
    said = capsys.readouterr()
    assert exit_.value.code == 1 and "2 image(s)" in said.out
    assert said.err.startswith(f"preciseinv: 1 file(s) not reconstructed: '{damaged}' is not a readable latent file")
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == sorted(f"{p.stem}.png" for p in (files[0], files[2]))
    other = tmp_path / "damaged" / files[2].name  # two: each is named
    other.write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        main([str(damaged), str(other), f"output_dir={tmp_path / 'none'}", "device=cpu"])
    lines = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 1 and len(lines) == 2 and lines[0].startswith("preciseinv: 2 file(s) not reconstructed")
    assert str(damaged) in lines[0] and lines[1].startswith(f"preciseinv: also not reconstructed: '{other}'")
    # one file given twice, spelled two ways: written once
    main([str(files[0]), str(files[0].parent / ".." / "latents" / files[0].name), f"output_dir={tmp_path / 'once'}",
          "device=cpu"])
    assert "1 image(s)" in capsys.readouterr().out
    # the same id from two runs would write one image: refused before any is written
    other = tmp_path / "other" / files[0].name
    other.parent.mkdir()
    other.write_bytes(files[0].read_bytes())
    with pytest.raises(SystemExit) as exit_:
        main([str(files[0]), str(other), f"output_dir={tmp_path / 'both'}", "device=cpu"])
    assert exit_.value.code == 2 and not (tmp_path / "both").exists()
    assert f"2 files would write {tmp_path / 'both' / files[0].stem}.png" in capsys.readouterr().err


def test_an_image_is_named_by_its_sample_id_subfolders_kept(tmp_path, capsys):
    """Ids of images in subfolders (``a/dup``, ``b/dup``) keep them apart, as the run's recon/ does."""
    import torch

    from preciseinv import Inverter

    inv = Inverter("mini", eta=1e-3, max_iters=2)
    result = inv.invert(torch.zeros(2, 3, 32, 32))
    for index, sample_id in enumerate(("a/dup", "b/dup")):
        inv.save(tmp_path / f"{index}" / "dup.safetensors", result, index, sample_id=sample_id)
    main([str(tmp_path / "0" / "dup.safetensors"), str(tmp_path / "1" / "dup.safetensors"),
          f"output_dir={tmp_path / 'out'}", "device=cpu"])
    assert "2 image(s)" in capsys.readouterr().out
    assert (tmp_path / "out" / "a" / "dup.png").is_file() and (tmp_path / "out" / "b" / "dup.png").is_file()


@pytest.mark.parametrize("args,message", [([], "usage"), (["nope.safetensors"], "'nope.safetensors': no such file"),
                                          (["runs/x/latents/*.safetensors"], "'runs/x/latents/*.safetensors': no file "
                                                                             "matches"),
                                          (["."], "'.' is not a .safetensors latent file"),
                                          (["x.safetensors", "colour=red"], "unknown option 'colour'"),
                                          (["x.safetensors", "--output_dir", "out"], "--output_dir: options here are "
                                                                                      "key=value (output_dir=DIR"),
                                          (["run"], "'run' is a run's folder: give its latent files, "
                                                    "run/latents/*.safetensors"),
                                          (["x.safetensors", "device=gpu"], "device=gpu is not a device: use cpu or "
                                                                            "cuda"),
                                          (["shard-000000.tar"], "'shard-000000.tar' is a webdataset shard: extract "
                                                                 "its latent files first (tar -xf")])
def test_mistakes_are_one_line(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.safetensors").write_bytes(b"")
    (tmp_path / "shard-000000.tar").write_bytes(b"")
    (tmp_path / "run" / "latents").mkdir(parents=True)
    (tmp_path / "run" / "latents" / "a.safetensors").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr()
    assert message in (err.err + err.out)


def test_a_latent_file_with_torn_metadata_is_listed_not_a_traceback(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    from preciseinv.outputs.latents import FORMAT

    save_file({"latent": torch.zeros(3, 4, 4)}, str(tmp_path / "x.safetensors"), metadata={"format": FORMAT})
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "is not a readable latent file (KeyError: 'preciseinv')" in err


def test_a_foreign_file_is_one_line(tmp_path, capsys):
    (tmp_path / "x.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 1 and "\n" not in err
    assert err.startswith(f"preciseinv: 1 file(s) not reconstructed: '{tmp_path / 'x.safetensors'}' is not a readable")


def test_ctrl_c_while_decoding_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch):
    import os
    import signal

    import preciseinv.reconstruct as command

    def interrupted(*args):
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, during the decoding
        raise AssertionError("a Ctrl-C after the start was not raised at once")

    monkeypatch.setattr(command, "reconstruct", interrupted)
    (tmp_path / "x.safetensors").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "x.safetensors")])
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "preciseinv: interrupted\n"


def test_cuda_on_a_machine_without_one_is_one_line():
    import torch

    from preciseinv.errors import PreciseInvError
    from preciseinv.models.loading import resolve_device

    assert resolve_device("cpu") == "cpu"
    if torch.cuda.is_available():  # where there is one: cuda, asked for or not
        assert resolve_device("cuda") == "cuda" and resolve_device(None) == "cuda"
        return
    assert resolve_device(None) == "cpu"
    with pytest.raises(PreciseInvError, match=r"^device=cuda, but this machine has .*: use device=cpu$"):
        resolve_device("cuda")


def test_a_model_given_by_a_relative_path_reconstructs_from_any_folder(fit_in_process, tmp_path, capsys, monkeypatch):
    """Latent files record a local model directory by its absolute path: reconstruct works from another folder."""
    from pathlib import Path

    from preciseinv.outputs import load_latent

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    fit_in_process("method=ddim", "~logger", "lpips=false", "data.limit=1", "model.path=benchmarks/assets/mini-ddpm-clip",
                   f"output_dir={tmp_path / 'run'}")
    (latent,) = (tmp_path / "run" / "latents").glob("*.safetensors")
    assert load_latent(latent)[1]["model"]["source"] == str(root / "benchmarks" / "assets" / "mini-ddpm-clip")
    monkeypatch.chdir(tmp_path)
    main([str(latent), "output_dir=out", "device=cpu"])
    assert "1 image(s)" in capsys.readouterr().out and (tmp_path / "out" / f"{latent.stem}.png").is_file()


@pytest.mark.parametrize("command", ["reconstruct", "report", "manifest"])
def test_help_is_plain_text(command, capsys):
    """The commands without Hydra print their docstring as --help: without its reStructuredText quotes."""
    import importlib

    module = importlib.import_module(f"preciseinv.{command}")
    with pytest.raises(SystemExit) if command != "reconstruct" else contextlib.nullcontext():
        module.main(["--help"])
    said = capsys.readouterr().out
    assert f"python -m preciseinv.{command}" in said and "``" not in said
