"""``python -m preciseinv.reconstruct``: each latent file's image is what the run's recon/ holds."""

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


@pytest.mark.parametrize("args,message", [([], "usage"), (["nope.safetensors"], "'nope.safetensors': no such file"),
                                          (["runs/x/latents/*.safetensors"], "'runs/x/latents/*.safetensors': no file "
                                                                             "matches"),
                                          (["."], "'.' is not a .safetensors latent file"),
                                          (["x.safetensors", "colour=red"], "unknown option 'colour'")])
def test_mistakes_are_one_line(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.safetensors").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr()
    assert message in (err.err + err.out)


def test_a_foreign_file_is_one_line(tmp_path, capsys):
    (tmp_path / "x.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err.strip()
    assert err.startswith("preciseinv: error: cannot read latent file") and "\n" not in err


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
