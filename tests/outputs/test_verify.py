"""Outputs that prove themselves: records carry each file's size and SHA-256; a rerun redoes the samples whose files
are missing or of the wrong size (verify=full: also same-size corruption); ``python -m preciseinv.manifest DIR
--verify`` lists what is damaged without a GPU; records without checksums still resume."""

import hashlib
import json
import shutil

import pytest

from preciseinv.manifest import main as manifest_main
from preciseinv.outputs import load_latent
from preciseinv.outputs.records import read_jsonl, verify

FAST = ("solver=fixed_point", "method.max_iters=40", "~logger", "lpips=false")


@pytest.fixture(scope="module")
def finished(fit_in_process, tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "run"
    fit_in_process(*FAST, f"output_dir={out}")
    return out


@pytest.fixture
def run(finished, fit_in_process, tmp_path):
    """A copy of one finished run (each test damages its own), and ``again()``: the same command rerun into it."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)

    def again(*extra):
        return fit_in_process(*FAST, f"output_dir={out}", *extra)

    return out, again


def records(out):
    return {r["id"]: r for r in read_jsonl(out / "manifest.jsonl")}


def test_records_carry_each_files_size_and_checksum(run):
    out, _ = run
    for record in records(out).values():
        assert set(record["files"]) == {record["latent"], record["recon"]}
        for rel, entry in record["files"].items():
            data = (out / rel).read_bytes()
            assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_rerun_redoes_truncated_and_deleted_files(run, capsys):
    out, again = run
    (out / "latents" / "astronaut.safetensors").write_bytes(b"\0" * 100)
    (out / "recon" / "chelsea.png").unlink()
    capsys.readouterr()
    summary = again()
    said = capsys.readouterr().out
    assert "2 finished sample(s) have missing or damaged files" in said and "inverting them again" in said
    assert summary["n"] == 4 and len(read_jsonl(out / "manifest.jsonl")) == 4  # each sample once
    good, damaged = verify(out, full=True)
    assert good == {"astronaut", "chelsea", "coffee", "rocket"} and not damaged
    load_latent(out / "latents" / "astronaut.safetensors")


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte in the tensor data: same size, different content
    path.write_bytes(bytes(data))


def test_same_size_corruption_needs_verify_full(run, capsys):
    out, again = run
    flip_a_byte(out / "latents" / "coffee.safetensors")
    capsys.readouterr()
    again()
    assert "already inverted" in capsys.readouterr().out  # stat only: not seen
    again("verify=full")
    assert "1 finished sample(s) have missing or damaged files (coffee: " in capsys.readouterr().out
    assert verify(out, full=True) == ({"astronaut", "chelsea", "coffee", "rocket"}, {})


def test_what_manifest_verify_lists_the_plain_rerun_redoes(run, capsys):
    out, again = run
    flip_a_byte(out / "latents" / "coffee.safetensors")
    assert manifest_main([str(out), "--verify"]) == 1
    said = capsys.readouterr().out
    assert "1 damaged" in said and "rerun the run's command to redo them" in said
    assert [json.loads(line)["id"] for line in (out / "damaged.jsonl").read_text().splitlines()] == ["coffee"]
    again()  # as the line says: the same command, no verify=full
    assert ("1 finished sample(s) have missing or damaged files (coffee: latents/coffee.safetensors fails its "
            "checksum)") in capsys.readouterr().out
    assert not (out / "damaged.jsonl").exists()  # redone: the next reruns stat as before
    assert verify(out, full=True) == ({"astronaut", "chelsea", "coffee", "rocket"}, {})
    assert manifest_main([str(out), "--verify"]) == 0 and not (out / "damaged.jsonl").exists()
    capsys.readouterr()
    again()  # the list is empty now, the samples intact: nothing to redo
    assert "already inverted" in capsys.readouterr().out


def test_manifest_verify_says_what_the_records_lost(run, capsys):
    """A manifest line that no longer parses, or a manifest deleted, loses its samples' records (their files stay):
    --verify says so (exit 1) where it counted them as nothing at all; the rerun inverts them again."""
    out, again = run
    lines = (out / "manifest.jsonl").read_text().splitlines()
    lines[1] = lines[1][:len(lines[1]) // 2]  # a record cut short in the middle of the file
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    assert manifest_main([str(out), "--verify"]) == 1
    said = capsys.readouterr().out
    assert "3 samples intact, 0 damaged; 1 unreadable line(s) in manifest.jsonl: their samples' records are" in said
    (out / "manifest.jsonl").unlink()
    assert manifest_main([str(out), "--verify"]) == 1
    assert "0 samples intact, 0 damaged; no manifest.jsonl beside 4 latent file(s)" in capsys.readouterr().out
    again()
    assert manifest_main([str(out), "--verify"]) == 0 and len(records(out)) == 4


def test_records_without_checksums_still_resume(run, capsys):
    out, again = run
    legacy = [{k: v for k, v in r.items() if k != "files"} for r in read_jsonl(out / "manifest.jsonl")]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in legacy))
    (out / "latents" / "rocket.safetensors").write_bytes(b"not a latent file")  # a foreign file in its place
    (out / "latents" / "stray.safetensors").write_bytes(b"junk")  # a file no record lists
    capsys.readouterr()
    again()
    assert "already inverted" in capsys.readouterr().out  # stat only: the files exist
    again("verify=full")  # loads each latent file of a record without checksums: rocket's is redone
    assert "1 finished sample(s) have missing or damaged files (rocket: " in capsys.readouterr().out
    load_latent(out / "latents" / "rocket.safetensors")
    assert manifest_main([str(out), "--verify"]) == 0  # the stray file is no record lost


def test_a_bad_verify_value_is_one_line(run):
    from preciseinv.errors import PreciseInvError

    _, again = run
    with pytest.raises(PreciseInvError, match="verify must be size"):
        again("verify=sometimes")


def test_a_rerun_redoes_an_image_whose_file_changed_since_it_was_inverted(fit_in_process, tmp_path, capsys):
    """Records keep the size and SHA-256 of the image file as read: a rerun redoes a sample whose image is now of
    another size (verify=full: of other bytes), and keeps the others."""
    import numpy as np
    from PIL import Image

    root, out, rng = tmp_path / "in", tmp_path / "run", np.random.default_rng(0)
    root.mkdir()
    for name in ("a", "b"):  # BMP: other pixels, the same file size
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"{name}.bmp")
    args = (*FAST, "data=folder", f"data.root={root}", f"output_dir={out}")
    fit_in_process(*args)
    first = records(out)
    data = (root / "a.bmp").read_bytes()
    assert first["a"]["source_file"] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "a.bmp")
    capsys.readouterr()
    fit_in_process(*args)  # a stat: the same size escapes it
    assert "finished sample(s)" not in capsys.readouterr().out and records(out) == first
    fit_in_process(*args, "verify=full")
    said = capsys.readouterr().out
    assert (f"1 finished sample(s) have missing or damaged files (a: its image {root / 'a.bmp'} changed since it "
            "was inverted (another checksum))") in said
    now = records(out)
    assert now["a"]["source_file"]["sha256"] == hashlib.sha256((root / "a.bmp").read_bytes()).hexdigest()
    assert now["b"] == first["b"]
    Image.fromarray(rng.integers(0, 255, (40, 32, 3), dtype=np.uint8)).save(root / "b.bmp")  # another size
    fit_in_process(*args)
    assert "(b: its image" in capsys.readouterr().out and records(out)["a"] == now["a"]
    (root / "a.bmp").unlink()  # an image removed from the folder: what was inverted from it is kept
    assert verify(out)[0] == {"a", "b"}


def test_a_rerun_with_a_retry_solver_solves_again_only_what_was_left_above_eta(fit_in_process, tmp_path, capsys):
    """A run begun without retry=, rerun with it, inverts again exactly its samples left above eta (those a retry
    solver has not been tried on); the others keep their files, and a third run has nothing left to do."""
    out, short = tmp_path / "run", ("solver=fixed_point", "method.max_iters=3", "~logger", "lpips=false")
    fit_in_process(*short, f"output_dir={out}")
    before = records(out)
    left = {i for i, r in before.items() if not all(r["converged"])}
    assert left and "retry" not in next(iter(before.values()))
    capsys.readouterr()
    fit_in_process(*short, f"output_dir={out}", "retry=spectral", "method.retry_iters=60")
    said = capsys.readouterr().out
    assert f"{len(left)} finished sample(s) left above eta without retry=spectral" in said and "retry=spectral" in said
    after = records(out)
    assert set(after) == set(before) and len(read_jsonl(out / "manifest.jsonl")) == len(before)
    for i, record in after.items():
        if i in left:  # solved again: the retry's record, each step below eta or no worse than before
            assert record["retry"] == "spectral"
            assert all(a <= b for a, b in zip(record["residual"], before[i]["residual"]))
        else:
            assert record["files"] == before[i]["files"]
    fit_in_process(*short, f"output_dir={out}", "retry=spectral", "method.retry_iters=60")
    assert "left above eta" not in capsys.readouterr().out and records(out) == after
    fit_in_process(*short, f"output_dir={out}", "retry=adamw")  # another retry: what one found is kept
    assert "left above eta" not in capsys.readouterr().out and records(out) == after
