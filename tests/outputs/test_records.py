"""Per-rank record files, the assembled manifest, and ``python -m preciseinv.manifest`` for a run that died."""

import json
import os
import subprocess
import sys
import time

from preciseinv.outputs.records import append_jsonl, assemble, finished_ids, latest_records, rank_files, read_jsonl
from preciseinv.outputs.summary import write_summary


def rec(i, psnr=30.0, latent=True):
    return {"id": f"s{i}", "psnr": psnr, "ssim": 0.9, "lpips": None, "seconds": 1.0, "converged": [True],
            "nfe_forward": 4, "nfe_backward": 0, "phase": ["fixed_point"],
            "latent": f"latents/s{i}.safetensors" if latent else None}


def test_a_torn_rank_file_is_cut_before_the_next_append(tmp_path):
    path, _ = rank_files(tmp_path, 3)
    assert path == tmp_path / "records" / "rank-3.jsonl"
    append_jsonl(path, rec(0))
    with open(path, "a") as f:
        f.write('{"id": "s1", "psn')  # killed mid-line
    append_jsonl(path, rec(1))
    assert path.read_text().count("\n") == 2 and [r["id"] for r in read_jsonl(path)] == ["s0", "s1"]
    assert "psn\n" not in path.read_text()


def test_assemble_merges_ranks_keeps_the_latest_record_and_is_idempotent(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(json.dumps(rec(0, 10.0)) + "\n" + json.dumps(rec(1)) + "\n")
    append_jsonl(rank_files(tmp_path, 0)[0], rec(0, 20.0))  # s0 redone by a later run
    append_jsonl(rank_files(tmp_path, 1)[0], rec(2))
    append_jsonl(rank_files(tmp_path, 1)[1], {"id": "bad", "source": "x", "reason": "unreadable"})
    append_jsonl(rank_files(tmp_path, 0)[1], {"id": "s2", "source": "y", "reason": "transient"})  # later succeeded
    (tmp_path / "records" / "rank-notes.jsonl").write_text("not a rank file\n")
    seen = []
    n, failures = assemble(tmp_path, on_record=seen.append)
    records = read_jsonl(tmp_path / "manifest.jsonl")
    assert n == 3 and [(r["id"], r["psnr"]) for r in records] == [("s0", 20.0), ("s1", 30.0), ("s2", 30.0)]
    assert [f["id"] for f in failures] == ["bad"]
    assert seen == records  # the summary sees each merged record once, as written
    assert (tmp_path / "records" / "rank-1.jsonl").exists()  # kept: other ranks may be reading them
    assert assemble(tmp_path, remove_rank_files=True) == (3, failures)
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == ["rank-notes.jsonl"]  # not ours: kept
    assert assemble(tmp_path) == (3, failures) and read_jsonl(tmp_path / "manifest.jsonl") == records
    (tmp_path / "records" / "rank-notes.jsonl").unlink()
    append_jsonl(rank_files(tmp_path, 0)[0], rec(3))
    assemble(tmp_path, remove_rank_files=True)
    assert not (tmp_path / "records").exists()  # records/ is there during a run only


def test_finished_ids_need_the_record_and_the_latent_file(tmp_path):
    append_jsonl(rank_files(tmp_path, 0)[0], rec(0))
    append_jsonl(rank_files(tmp_path, 1)[0], rec(1))
    (tmp_path / "latents").mkdir()
    (tmp_path / "latents" / "s1.safetensors").write_bytes(b"x")
    assert finished_ids(tmp_path) == {"s1"}
    assert [r["id"] for r in latest_records(tmp_path)] == ["s0", "s1"]


def test_manifest_command_assembles_a_dead_run(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"method": {"name": "preciseinv"}}))
    for rank in range(2):
        for i in range(3):
            append_jsonl(rank_files(tmp_path, rank)[0], rec(3 * rank + i, 20.0 + i))
    with open(rank_files(tmp_path, 1)[0], "a") as f:
        f.write('{"id": "s9"')  # the rank died mid-line
    live = subprocess.run([sys.executable, "-m", "preciseinv.manifest", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert live.returncode == 2 and "seems to be writing" in live.stderr  # just written: a live run's files
    for path in (tmp_path / "records").iterdir():
        os.utime(path, (time.time() - 600, time.time() - 600))  # the run died ten minutes ago
    proc = subprocess.run([sys.executable, "-m", "preciseinv.manifest", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "6 samples, 0 failed" in proc.stdout
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "manifest.jsonl")) == [f"s{i}" for i in range(6)]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n"] == 6 and summary["psnr_mean"] == 21.0 and summary["config"]["method"]["name"] == "preciseinv"
    assert summary["complete"] is False  # a run that died
    assert not list((tmp_path / "records").glob("*.jsonl"))
    assert write_summary(tmp_path)["n"] == 6  # again: nothing changes

    bad = subprocess.run([sys.executable, "-m", "preciseinv.manifest", str(tmp_path / "nowhere")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nowhere' does not exist" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "preciseinv.manifest", str(tmp_path / "summary.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "summary.json' is not a folder" in bad.stderr
    (tmp_path / "other").mkdir()  # a folder, but no run's
    bad = subprocess.run([sys.executable, "-m", "preciseinv.manifest", str(tmp_path / "other")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a preciseinv output_dir" in bad.stderr


def test_the_tracker_starts_after_whole_lines_so_a_cut_torn_tail_loses_nothing(tmp_path):
    from preciseinv.callbacks.tracking import InversionTracker

    path = rank_files(tmp_path, 0)[0]
    append_jsonl(path, rec(0))
    with open(path, "a") as f:
        f.write('{"id": "s1", "ps')  # a dead run's torn line
    tracker = InversionTracker(output_dir=str(tmp_path))
    tracker.on_predict_start(None, None)  # where this run's records will start
    append_jsonl(path, rec(2))  # the new run's first record cuts the torn tail
    append_jsonl(path, rec(3))
    assert [r["id"] for r in tracker._new_records()] == ["s2", "s3"]


def test_manifest_on_a_finished_run_keeps_it_finished(tmp_path):
    """Assembling a folder whose run ended (nothing left in records/) changes nothing the report reads."""
    from preciseinv.manifest import main

    for i in range(3):
        append_jsonl(rank_files(tmp_path, 0)[0], rec(i, 30.0))
    write_summary(tmp_path, {"method": {"name": "preciseinv"}}, remove_rank_files=True, complete=True)
    assert main([str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["complete"] is True and summary["n"] == 3
