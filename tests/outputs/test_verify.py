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


def test_a_bad_verify_value_is_one_line(run):
    from preciseinv.errors import PreciseInvError

    _, again = run
    with pytest.raises(PreciseInvError, match="verify must be size"):
        again("verify=sometimes")
