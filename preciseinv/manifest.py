"""``python -m preciseinv.manifest DIR``: assemble ``manifest.jsonl`` (and ``failures.jsonl``, ``summary.json``) of
an output_dir whose run died before doing it itself: every rank's ``records/rank-<k>.jsonl`` merged into the
manifest, one line per sample (its latest record). Safe to run any number of times; never while a run is writing
into DIR.

``--verify`` checks instead, without a GPU, that every finished sample's files are there and intact (each file
re-read and re-hashed against the size and SHA-256 its record holds; latent files of records without
checksums are loaded): it writes ``damaged.jsonl`` ({id, why} per damaged sample) into DIR and exits with status 1 if
any is damaged, or if records were lost (manifest lines that no longer parse; no manifest beside latent files).
Rerunning the run's command redoes exactly those samples."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from preciseinv.console import plain
from preciseinv.outputs.lock import holder, released_here
from preciseinv.outputs.records import MANIFEST, RECORDS, rank_record_files, unreadable_lines
from preciseinv.outputs.summary import write_summary

LIVE_SECONDS = 120  # a rank file written this recently belongs to a run that is still going


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m preciseinv.manifest", description=plain(__doc__))
    p.add_argument("output_dir", type=Path)
    p.add_argument("--force", action="store_true", help="assemble even if a run seems to be writing into DIR")
    p.add_argument("--verify", action="store_true", help="check every finished sample's files; write damaged.jsonl")
    args = p.parse_args(argv)
    out = args.output_dir
    if not out.is_dir():
        print(f"preciseinv: error: {str(out)!r} {'is not a folder' if out.exists() else 'does not exist'}: give a "
              "run's output_dir", file=sys.stderr)
        return 2
    if not ((out / "run.json").is_file() or (out / RECORDS).is_dir() or (out / "manifest.jsonl").is_file()):
        print(f"preciseinv: error: {str(out)!r} is not a preciseinv output_dir (no run.json, records/ or "
              "manifest.jsonl)", file=sys.stderr)
        return 2
    owner = holder(out)
    if owner and not args.force:
        print(f"preciseinv: error: a run is writing into this output_dir ({owner}); it assembles the manifest itself "
              "when it ends: wait, or pass --force", file=sys.stderr)
        return 2
    # a run that took the folder's lock on this machine and let it go is over; else (a filesystem without locks, a
    # lock taken on another machine) rank files written this recently may be a live run's
    recent = [f for f in (out / RECORDS).glob("*.jsonl") if time.time() - f.stat().st_mtime < LIVE_SECONDS] \
        if (out / RECORDS).is_dir() and not released_here(out) else []
    if recent and not args.force:
        print(f"preciseinv: error: {str(recent[0])!r} was written less than {LIVE_SECONDS} s ago: a run seems to be "
              "writing into this output_dir (it assembles the manifest itself when it ends); wait, or pass --force",
              file=sys.stderr)
        return 2
    if args.verify:
        return check(out)
    config = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else None
    before = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    # a run that died left rank files: not complete; without any, nothing changes what the last summary said
    complete = bool(before.get("complete")) and not rank_record_files(out)
    summary = write_summary(out, config, remove_rank_files=True, complete=complete, total=before.get("n_total"))
    print(f"{out / 'manifest.jsonl'}: {summary['n']} samples, {summary['n_failed']} failed; summary.json written")
    return 0


def check(out: Path) -> int:
    """``--verify``: damaged.jsonl and one line; status 1 when something is damaged or records were lost."""
    from preciseinv.outputs.atomic import atomic_write_bytes
    from preciseinv.outputs.records import DAMAGED, verify

    good, damaged = verify(out, full=True)
    if damaged:
        atomic_write_bytes(out / DAMAGED, "".join(json.dumps({"id": i, "why": why}) + "\n"
                                                  for i, why in damaged.items()).encode())
    else:  # an earlier check's list is out of date
        (out / DAMAGED).unlink(missing_ok=True)
    lost = lost_records(out)
    print(f"{out}: {len(good)} samples intact, {len(damaged)} damaged" +
          (f" (listed in {out / DAMAGED}; rerun the run's command to redo them)" if damaged else "") +
          (f"; {lost}" if lost else ""))
    return 1 if damaged or lost else 0


def lost_records(out: Path) -> str | None:
    """What the records lost, where something did: manifest lines that no longer parse, or no manifest (nor rank
    files) beside latent files; a rerun inverts those samples again. (A stray latent file beside an intact manifest
    is no lost record: the rerun ignores it.)"""
    if (out / MANIFEST).is_file():
        n = unreadable_lines(out / MANIFEST)
        return f"{n} unreadable line(s) in {MANIFEST}: their samples' records are lost; a rerun inverts them again" \
            if n else None
    latents = list((out / "latents").rglob("*.safetensors")) if (out / "latents").is_dir() else []
    if latents and not rank_record_files(out):
        return f"no {MANIFEST} beside {len(latents)} latent file(s): their records are lost; a rerun inverts them again"
    return None


if __name__ == "__main__":
    raise SystemExit(main())
