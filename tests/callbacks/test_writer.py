import json

from preciseinv.callbacks.writer import append_jsonl, read_jsonl, summarize


def record(i, psnr, converged=(True, True), lpips=None):
    return {"id": f"s{i}", "psnr": psnr, "ssim": 0.9, "lpips": lpips, "seconds": 2.0, "converged": list(converged),
            "nfe_forward": 10, "nfe_backward": 8,
            "phase": ["init" if converged[0] else None, "newton" if converged[1] else None]}


def test_manifest_lines_and_torn_tail(tmp_path):
    path = tmp_path / "manifest.jsonl"
    append_jsonl(path, record(0, 30.0))
    append_jsonl(path, record(1, 40.0))
    with open(path, "a") as f:
        f.write('{"id": "s2", "psn')  # a writer killed mid-line
    assert [r["id"] for r in read_jsonl(path)] == ["s0", "s1"]


def test_summary_means_latest_record_per_id_and_failures():
    records = [record(0, 10.0, (True, False)), record(0, 30.0), record(1, 40.0)]
    failures = [{"id": "bad", "source": "x", "reason": "r"}]
    s = summarize(records, failures, {"k": 1})
    assert s["n"] == 2 and s["n_failed"] == 1 and s["psnr_mean"] == 35.0
    assert s["converged_fraction"] == 1.0 and s["lpips_mean"] is None and s["config"] == {"k": 1}
    assert s["cost_mean"] == 10 + 2 * 8 and s["phases"] == {"init": 2, "newton": 2}
    peaks = [dict(r, peak_memory_mb=m) for r, m in zip(records[1:], (120.0, 80.0))]
    assert summarize(peaks, [])["peak_memory_mb"] == 120.0 and s["peak_memory_mb"] is None
    assert summarize([record(0, 30.0, lpips=0.25)], [])["lpips_mean"] == 0.25
    assert json.dumps(s)


def test_a_torn_tail_never_swallows_the_next_record(tmp_path):
    from preciseinv.callbacks.writer import repair_jsonl

    path = tmp_path / "manifest.jsonl"
    append_jsonl(path, record(0, 30.0))
    with open(path, "a") as f:
        f.write('{"id": "s1", "psn')  # killed mid-line
    append_jsonl(path, record(1, 40.0))  # a rerun redoes s1 without repairing first: still its own line
    assert [r["id"] for r in read_jsonl(path)] == ["s0", "s1"]
    with open(path, "a") as f:
        f.write('{"id": "s2", "ps')
    assert repair_jsonl(path) == len('{"id": "s2", "ps') and repair_jsonl(path) == 0
    assert path.read_bytes().endswith(b"\n") and len(read_jsonl(path)) == 2


def test_files_honour_the_umask(tmp_path):
    import os

    from preciseinv.outputs import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        append_jsonl(tmp_path / "m.jsonl", {"id": 1})
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "private.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.jsonl").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
