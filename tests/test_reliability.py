"""Bad input never stops a run; a killed run resumes with every sample exactly once and nothing corrupt."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from preciseinv.errors import PreciseInvError

pytestmark = pytest.mark.slow


def fit_cmd(*args):
    return [sys.executable, "-m", "preciseinv.fit", *args]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def manifest(out: Path) -> list[dict]:
    path = out / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def published(out: Path) -> list[dict]:
    """What a run has published so far: manifest.jsonl and its ranks' record files (records/rank-<k>.jsonl)."""
    from preciseinv.outputs.records import latest_records

    return latest_records(out)


def make_bad_folder(root: Path) -> tuple[set[str], set[str]]:
    """A folder of awkward inputs: (ids that must be inverted, ids that must become failure records)."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (24, 36, 3), dtype=np.uint8))
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    rgb.save(root / "good.png")
    rgb.convert("L").save(root / "gray.png")
    rgb.convert("RGBA").save(root / "rgba.png")
    rgb.convert("P").save(root / "palette.png")
    Image.fromarray((rng.integers(0, 65535, (24, 36))).astype(np.uint16)).save(root / "deep16.png")
    rgb.convert("CMYK").save(root / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    rgb.save(root / "rotated.jpg", exif=exif.tobytes())
    rgb.resize((5, 3)).save(root / "tiny.png")
    Image.new("RGB", (10000, 10000), (120, 60, 30)).save(root / "huge.jpg", quality=50)
    rgb.save(root / "name with spaces ü.png")
    rgb.save(root / "a" / "dup.png")
    rgb.save(root / "b" / "dup.png")
    buf = (root / "good.png").read_bytes()
    (root / "truncated.png").write_bytes(buf[: len(buf) // 2])
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "zero.png").write_bytes(b"")
    (root / "fake.png").write_text("plain text with an image extension")
    (root / "notes.txt").write_text("ignored: not an image extension")
    good = {"good", "gray", "rgba", "palette", "deep16", "cmyk", "rotated", "tiny", "huge", "name with spaces ü",
            "a/dup", "b/dup"}
    return good, {"truncated", "corrupt", "zero", "fake"}


def test_bad_inputs_become_failure_records_and_the_rest_is_inverted(tmp_path):
    good, bad = make_bad_folder(tmp_path / "in")
    out = tmp_path / "out"
    proc = subprocess.run(fit_cmd("method=ddim", "data=folder", f"data.root={tmp_path / 'in'}", "data.num_workers=2",
                                  "~logger", f"output_dir={out}"), env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {r["id"] for r in manifest(out)} == good
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {f["id"] for f in failures} == bad and all(f["reason"] and f["source"] for f in failures)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == len(good) and summary["n_failed"] == len(bad)
    assert (out / "latents" / "name with spaces ü.safetensors").is_file()
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == f"outputs in {out}"  # without a logger: the console's last line
    assert lines[-2].startswith("failed: ") and lines[-2].endswith(f"(and 3 more); all in {out / 'failures.jsonl'}")
    assert any(f"failed: {f['id']}: {f['reason']} " in lines[-2] for f in failures)  # the first one, and why


def test_a_run_whose_every_input_failed_exits_1(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    out = tmp_path / "out"
    proc = subprocess.run(fit_cmd("method=ddim", "data=folder", f"data.root={tmp_path / 'in'}", "~logger",
                                  f"output_dir={out}"), env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-2].startswith("failed: corrupt: ")  # why, and where the record is
    assert json.loads((out / "summary.json").read_text())["n_failed"] == 1
    (tmp_path / "good").mkdir()  # in a sweep, the runs after it still run; the status is 1 at the end
    Image.new("RGB", (32, 32), (200, 120, 40)).save(tmp_path / "good" / "plain.png")
    sweep = subprocess.run(fit_cmd("--multirun", "method=ddim", "data=folder",
                                   f"data.root={tmp_path / 'in'},{tmp_path / 'good'}", "~logger",
                                   f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=${hydra.job.num}"),
                           env=ENV, capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 1, sweep.stderr[-3000:]
    assert json.loads((tmp_path / "sweep" / "1" / "summary.json").read_text())["n"] == 1


def run_and_kill(args: list[str], out: Path, after_records: int) -> None:
    """Start a run, SIGKILL it once ``after_records`` samples are in the manifest."""
    proc = subprocess.Popen(fit_cmd(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while len(published(out)) < after_records and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("writer", ["files", "webdataset"])
def test_kill_9_then_rerun_gives_every_sample_exactly_once(tmp_path, writer, fit_in_process):
    from preciseinv.testing.tiny import write_images

    from preciseinv.outputs import load_latent

    names = [f"im{i}.png" for i in range(6)]
    write_images(tmp_path / "in", names, size=40)
    out = tmp_path / "out"
    args = ["data=folder", f"data.root={tmp_path / 'in'}", "data.batch_size=1", "data.num_workers=0",
            "method.eta=1e-7", "method.max_iters=60", "~logger", f"writer={writer}", f"output_dir={out}"]
    if writer == "webdataset":
        args.append("writer.maxcount=2")
    run_and_kill(args, out, after_records=2)
    killed_with = {r["id"] for r in published(out)}
    assert 2 <= len(killed_with) < 6
    assert not (out / "records").exists() or any((out / "records").iterdir())  # the dead run's records are there
    fit_in_process(*args)  # the rerun (the command's code after its argument parsing)
    records = manifest(out)
    assert sorted(r["id"] for r in records) == [n[:-4] for n in names]  # each exactly once
    assert not list((out / "records").glob("*.jsonl"))  # merged into manifest.jsonl at the end
    assert json.loads((out / "summary.json").read_text())["n"] == 6
    if writer == "files":
        for r in records:
            tensors, meta = load_latent(out / r["latent"])
            assert tensors["latent"].shape == (3, 32, 32) and meta["id"] == r["id"]
    else:
        from preciseinv.callbacks.shard_writer import read_shard_latents

        in_shards = [i for shard in sorted((out / "shards").glob("*.tar")) for i, _, _ in read_shard_latents(shard)]
        assert set(in_shards) == {n[:-4] for n in names}
        for r in records:
            assert r["id"] in {i for i, _, _ in read_shard_latents(out / r["shard"])}


def test_sigterm_and_sigint_stop_gracefully_and_the_rerun_resumes(tmp_path, fit_in_process):
    """SIGTERM stops a run (143), a rerun with other settings is refused, the rerun resumes and is stopped by
    SIGINT (130), and the last rerun finishes: every sample exactly once (writes on the writer thread, as on a
    GPU: a stop first publishes what was queued)."""
    from preciseinv.testing.tiny import write_images

    names = [f"im{i}.png" for i in range(6)]
    write_images(tmp_path / "in", names, size=40)
    out = tmp_path / "out"
    args = ["data=folder", f"data.root={tmp_path / 'in'}", "data.batch_size=1", "data.num_workers=0",
            "method.eta=1e-9", "method.max_iters=50", "writer.background=true", "~logger", f"output_dir={out}"]

    def stop(signum, status, before: int) -> int:
        """Start the run, send ``signum`` once it has published more than ``before`` samples; return how many
        samples are finished after the stop."""
        proc = subprocess.Popen(fit_cmd(*args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while len(published(out)) <= before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be stopped"
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == status, stderr[-3000:]
        assert "Traceback" not in stderr
        n = len(manifest(out))
        assert stderr.strip().splitlines()[-1] == \
            f"preciseinv: interrupted after {n} of 6 samples; rerun the same command to resume"
        assert json.loads((out / "summary.json").read_text())["n"] == n
        assert not list(out.rglob("*.tmp"))  # nothing half-written
        return n

    n = stop(signal.SIGTERM, 143, 0)
    assert 1 <= n < 6
    # resuming needs the same settings (in process: the command's one line is tested in tests/test_fit.py)
    with pytest.raises(PreciseInvError, match=r"other settings \(method\.max_iters=50 there, 5 now\)"):
        fit_in_process(*args[:-3], "method.max_iters=5", *args[-2:])
    assert n < stop(signal.SIGINT, 130, n) < 6  # the rerun resumed (it published more), then Ctrl-C stopped it
    fit_in_process(*args)  # the last rerun finishes
    assert sorted(r["id"] for r in manifest(out)) == [n[:-4] for n in names]


def test_a_full_disk_is_one_line_naming_the_folder(tmp_path):
    """Writes past RLIMIT_FSIZE fail with EFBIG, as a full disk fails with ENOSPC: one line, no traceback."""
    import resource

    from preciseinv.testing.tiny import write_images

    write_images(tmp_path / "in", [f"im{i}.png" for i in range(2)], size=40)
    out = tmp_path / "out"

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = subprocess.run(fit_cmd("data=folder", f"data.root={tmp_path / 'in'}", "data.num_workers=0", "~logger",
                                  f"output_dir={out}"), env=ENV, capture_output=True, text=True, timeout=600,
                          preexec_fn=small_files)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("preciseinv: error: cannot write in output_dir") and str(out) in last
    assert "rerun the same command to resume" in last
    assert not list(out.rglob("*.tmp"))  # the failed write left nothing half-written


def read_only(folder: Path, cmd: list[str]) -> list[str]:
    """``cmd`` run with ``folder`` truly read-only: a non-root user gets it by its mode (EACCES); root, whom modes do
    not stop, in a mount namespace where it is bound read-only (EROFS). Skips where neither is possible."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return cmd
    probe = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && ! touch "$0/probe"',
                            str(folder)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("root without mount namespaces: no way to make a folder read-only here")
    return ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder), *cmd]


def test_a_read_only_records_folder_is_one_line_and_the_rerun_resumes(tmp_path, fit_in_process):
    """A rerun that cannot write its record file: one line naming output_dir, exit 2, the finished samples kept;
    writable again, the next rerun finishes every sample exactly once."""
    from preciseinv.testing.tiny import write_images

    write_images(tmp_path / "in", ["im0.png", "im1.png"], size=40)
    out = tmp_path / "out"
    args = ["method=ddim", "data=folder", f"data.root={tmp_path / 'in'}", "data.num_workers=0", "~logger",
            f"output_dir={out}"]
    fit_in_process(*args)  # the first run, in this process; the command line is the one under test below
    write_images(tmp_path / "in", ["im2.png", "im3.png"], size=40)
    proc = subprocess.run(read_only(out / "records", fit_cmd(*args)), env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("preciseinv: error: cannot write in output_dir") and "make it writable" in last
    assert {r["id"] for r in manifest(out)} == {"im0", "im1"}  # what was finished is kept
    (out / "records").chmod(0o755)
    fit_in_process(*args)
    assert sorted(r["id"] for r in manifest(out)) == ["im0", "im1", "im2", "im3"]


def ddp_run_with_two_published(tmp_path):
    """A 2-process DDP run of 6 images (one per batch, slow enough to interrupt), once 2 samples are published:
    (image names, output_dir, its command-line arguments, the running process)."""
    from preciseinv.testing.tiny import write_images

    names = [f"im{i}.png" for i in range(6)]
    write_images(tmp_path / "in", names, size=40)
    out = tmp_path / "out"
    args = ["data=folder", f"data.root={tmp_path / 'in'}", "data.batch_size=1", "data.num_workers=0",
            "method.eta=1e-9", "method.max_iters=60", "trainer.accelerator=cpu", "trainer.devices=2",
            "trainer.strategy=ddp", "~logger", f"output_dir={out}"]
    proc = subprocess.Popen(fit_cmd(*args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while len(published(out)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    return names, out, args, proc


def test_sigkill_of_one_ddp_rank_ends_the_run_and_the_rerun_resumes(tmp_path):
    """kill -9 of the child rank of a 2-process DDP run: the run ends (rank 0 at its next collective, exit 2, or
    Lightning's launcher with its "Forcefully terminating" line, exit 137), the last line says that a rerun
    resumes, and the rerun finishes every sample exactly once."""
    names, out, args, proc = ddp_run_with_two_published(tmp_path)
    assert proc.poll() is None, "the run finished before a rank could be killed"
    children = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "preciseinv.fit"], capture_output=True,
                              text=True).stdout.split()
    assert children, "no child rank found"
    os.kill(int(children[0]), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    # rank 0 sees it first either at its next collective (one line, exit 2) or through Lightning's launcher, which
    # says "Forcefully terminating" and SIGKILLs the run (a shell shows 137): the last line is the same
    assert proc.returncode in (2, -signal.SIGKILL), stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert lines[-1].endswith("every finished sample is kept: rerun the same command to resume"), lines[-3:]
    assert "Traceback" not in stderr
    proc = subprocess.run(fit_cmd(*args), env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(r["id"] for r in manifest(out)) == [n[:-4] for n in names]  # each exactly once


def test_verbose_shows_lightnings_lines_once(tmp_path):
    """verbose=true brings back what the console hides (tests/test_fit.py checks the quiet default): Lightning's
    device lines, once (not twice through Hydra), and the summary as JSON."""
    verbose = subprocess.run(fit_cmd("method=ddim", "~logger", "verbose=true", f"output_dir={tmp_path / 'v'}"),
                             env=ENV, capture_output=True, text=True, timeout=600)
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "GPU available" in verbose.stdout + verbose.stderr and '"psnr_mean"' in verbose.stdout
    assert (verbose.stdout + verbose.stderr).count("GPU available") == 1


def test_sigterm_to_a_two_process_ddp_run_stops_gracefully(tmp_path):
    """SIGTERM to rank 0 only (``kill <pid>``): it forwards the stop to its child rank, which exits 0 at its next
    safe point (a non-zero child would make Lightning's launcher SIGKILL rank 0); rank 0 waits for it, publishes
    every finished sample of both ranks and exits 143 with the one line; the rerun finishes each exactly once."""
    names, out, args, proc = ddp_run_with_two_published(tmp_path)
    assert proc.poll() is None, "the run finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    n = len(manifest(out))
    assert stderr.strip().splitlines()[-1] == (f"preciseinv: interrupted after {n} of 6 samples; "
                                               "rerun the same command to resume")
    assert 2 <= n < 6 and not list(out.rglob("*.tmp"))
    proc = subprocess.run(fit_cmd(*args), env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(r["id"] for r in manifest(out)) == [n[:-4] for n in names]


def test_help_and_an_early_ctrl_c(tmp_path):
    """--help is the command's own page (exit 0); Ctrl-C while the run is still starting is one line, exit 130."""
    proc = subprocess.run(fit_cmd("--help"), env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m preciseinv.fit")
    assert "solver" in proc.stdout and "Powered by Hydra" not in proc.stdout
    piped = subprocess.Popen(fit_cmd("--help"), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    piped.stdout.close()  # `--help | head`: the reader is gone before the page is written
    _, stderr = piped.communicate(timeout=120)
    assert piped.returncode == 0 and "Traceback" not in stderr, stderr[-2000:]
    start = subprocess.Popen(fit_cmd("~logger", f"output_dir={tmp_path / 'out'}"), env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # importing torch and Lightning
    start.send_signal(signal.SIGINT)
    _, stderr = start.communicate(timeout=300)
    assert start.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("preciseinv: interrupted")


def test_the_resume_hint_names_the_folder_hydra_dated(tmp_path):
    """Without output_dir= (or, for a sweep, hydra.sweep.dir=) the run's folder is Hydra's dated one, which the
    same command would not find again: the hint names the setting that does (a full disk in one run, SIGTERM
    to a sweep)."""
    import resource

    from preciseinv.testing.tiny import write_images

    write_images(tmp_path / "in", [f"im{i}.png" for i in range(6)], size=40)

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    args = ["data=folder", f"data.root={tmp_path / 'in'}", "data.num_workers=0", "~logger"]
    proc = subprocess.run(fit_cmd(*args), cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600,
                          preexec_fn=small_files)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "rerun the same command with output_dir=" in last, last
    assert (tmp_path / last.split("with output_dir=")[1].split()[0]).is_dir()

    sweep = ["--multirun", *args, "data.batch_size=1", "method.eta=1e-9", "method.max_iters=50", "seed=0"]
    proc = subprocess.Popen(fit_cmd(*sweep), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while not any(published(run) for run in (tmp_path / "multirun").glob("*/*/*")) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    (dated,) = (tmp_path / "multirun").glob("*/*")
    assert last.endswith(f"rerun the same command with hydra.sweep.dir={dated.relative_to(tmp_path)} to resume"), last


def test_a_two_process_sweep_hydra_dates_writes_every_sample_into_one_folder(tmp_path):
    """--multirun without hydra.sweep.dir on two processes: the second starts the command again and dated its own
    sweep folder, so each run's samples were split between two folders (each summary counting half)."""
    from preciseinv.testing.tiny import write_images

    write_images(tmp_path / "in", [f"im{i}.png" for i in range(4)], size=40)
    proc = subprocess.run(fit_cmd("-m", "method=ddim", "data=folder", f"data.root={tmp_path / 'in'}",
                                  "data.batch_size=1", "data.num_workers=0", "lpips=false", "~logger",
                                  "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"),
                          cwd=tmp_path, env={k: v for k, v in ENV.items() if k != "PRECISEINV_DATED_SWEEP"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    (run,) = [p for p in sweep.iterdir() if p.is_dir()]
    assert json.loads((run / "summary.json").read_text())["n"] == 4
    assert sorted(r["id"] for r in manifest(run)) == [f"im{i}" for i in range(4)]
