"""One run at a time in an output_dir: a second is refused in one line naming the first; a dead run's lock is gone."""

import os
import signal
import subprocess
import sys
import time

import pytest

from preciseinv.errors import PreciseInvError
from preciseinv.outputs.lock import LOCK, holder, run_lock

HOLD = "from preciseinv.outputs.lock import run_lock; import sys, time\nwith run_lock(sys.argv[1]):\n" \
       "    print('held', flush=True); time.sleep(600)"


def holding(folder):
    """A process that holds ``folder``'s lock until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_naming_the_first_and_a_killed_ones_lock_is_gone(tmp_path):
    proc = holding(tmp_path)
    try:
        owner = holder(tmp_path)
        assert owner.startswith(f"pid {proc.pid} on ")
        with pytest.raises(PreciseInvError, match=rf"output_dir '{tmp_path}' is in use by another run \(pid "
                                                  rf"{proc.pid} on .*\): wait for it to end, or choose another"):
            with run_lock(tmp_path):
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert holder(tmp_path) is None  # the system let go of a killed process's lock
    for _ in range(2):  # free again, and taken and given back by one process in turn
        with run_lock(tmp_path):
            assert holder(tmp_path).startswith(f"pid {os.getpid()} on ")
        assert holder(tmp_path) is None


def test_fit_into_a_folder_a_live_run_holds_is_one_line_and_leaves_the_folder(tmp_path):
    out = tmp_path / "run"
    (out / ".hydra").mkdir(parents=True)  # what a run that just started has written
    proc = holding(out)
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "preciseinv.fit", "~logger", f"output_dir={out}"], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.strip().splitlines()[-1].startswith(f"preciseinv: error: output_dir '{out}' is in use by "
                                                               f"another run (pid {proc.pid} on ")
        assert time.time() - started < 120 and (out / ".hydra").is_dir() and (out / LOCK).is_file()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_the_manifest_command_waits_for_a_live_run_and_not_for_a_dead_one(tmp_path):
    """A run holding the folder is writing: refused. Once it is gone, its fresh rank files are assembled at once
    (without a lock file, rank files written in the last 120 s still count as a live run's)."""
    import json

    from preciseinv.outputs.records import append_jsonl, rank_files, read_jsonl

    (tmp_path / "run.json").write_text(json.dumps({"method": {"name": "preciseinv"}}))
    for i in range(2):
        append_jsonl(rank_files(tmp_path, 0)[0], {"id": f"s{i}", "psnr": 20.0, "ssim": 0.9, "lpips": None,
                                                  "seconds": 1.0, "converged": [True], "nfe_forward": 4,
                                                  "nfe_backward": 0, "phase": ["anderson"],
                                                  "latent": f"latents/s{i}.safetensors"})
    manifest = [sys.executable, "-m", "preciseinv.manifest", str(tmp_path)]
    proc = holding(tmp_path)
    try:
        live = subprocess.run(manifest, capture_output=True, text=True, timeout=120)
        assert live.returncode == 2 and f"a run is writing into this output_dir (pid {proc.pid} on " in live.stderr
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = subprocess.run(manifest, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [r["id"] for r in read_jsonl(tmp_path / "manifest.jsonl")] == ["s0", "s1"]


def test_without_locks_on_the_filesystem_runs_go_unguarded_and_manifest_keeps_its_wait(tmp_path, monkeypatch):
    """Where flock fails (NFS without its lock daemon, Lustre without -o flock) the run goes on unguarded and leaves
    no lock file, so the manifest command still treats fresh rank files as a live run's; a lock file that names
    another machine proves nothing here either."""
    import errno
    import fcntl

    from preciseinv.manifest import main as manifest_main
    from preciseinv.outputs.lock import released_here
    from preciseinv.outputs.records import append_jsonl, rank_files

    (tmp_path / "run.json").write_text("{}")
    append_jsonl(rank_files(tmp_path, 0)[0], {"id": "s0"})

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    with monkeypatch.context() as patched:
        patched.setattr(fcntl, "flock", no_locks)
        with run_lock(tmp_path):
            assert not (tmp_path / LOCK).exists() and holder(tmp_path) is None
            assert manifest_main([str(tmp_path)]) == 2  # rank files written in the last 120 s: a live run's
    (tmp_path / LOCK).write_text("pid 4242 on another-node, since 2026-12-07 01:00:00")
    assert not released_here(tmp_path) and manifest_main([str(tmp_path)]) == 2
    with run_lock(tmp_path):  # taken here and let go: the run is over
        pass
    assert released_here(tmp_path)
