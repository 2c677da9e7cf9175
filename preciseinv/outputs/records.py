"""Per-rank record files, and the one manifest users read.

During a run each rank appends to its own files, never to a shared one (appends from several NFS clients are not
atomic)::

    records/rank-<k>.jsonl            one manifest record per sample this rank inverted, one write + fsync each
    records/failures-rank-<k>.jsonl   one failure record per sample this rank could not read

``assemble(output_dir)`` (rank 0 at the start and the end of every run; ``python -m preciseinv.manifest DIR`` for
a run that died) merges the existing ``manifest.jsonl`` with every rank file into a new ``manifest.jsonl`` (one
valid line per sample: its latest record) and likewise ``failures.jsonl``, each written atomically; at the end of
a run the merged rank files are removed (never at the start, while other ranks may read them). A record is
published in its rank file only after its latent file is complete, so a sample is either in the union of these
files, or is redone by the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from preciseinv.outputs.atomic import atomic_write, atomic_write_bytes

MANIFEST, FAILURES, RECORDS = "manifest.jsonl", "failures.jsonl", "records"


def rank_files(output_dir: Path, rank: int) -> tuple[Path, Path]:
    """(records, failures) files of one rank."""
    folder = Path(output_dir) / RECORDS
    return folder / f"rank-{rank}.jsonl", folder / f"failures-rank-{rank}.jsonl"


def append_jsonl(path: Path, record: dict) -> None:
    """Append one line with one ``write`` and fsync it. A torn last line left by a writer killed mid-write is cut
    off first (each file has a single writer, so the cut cannot race another append)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)  # the umask applies
    try:
        _cut_torn_tail(fd)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut_torn_tail(fd: int) -> int:
    """Truncate an open file after its last newline; return how many bytes were cut."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    keep = os.pread(fd, size, 0).rfind(b"\n") + 1
    os.ftruncate(fd, keep)
    os.fsync(fd)
    return size - keep


def complete_length(path: Path) -> int:
    """Bytes up to and including a file's last newline (its whole lines)."""
    with open(path, "rb") as f:
        return f.read().rfind(b"\n") + 1


def repair_jsonl(path: Path) -> int:
    """Cut a torn last line (bytes after the last newline) off a JSONL file; return how many bytes were cut."""
    if not path.is_file():
        return 0
    fd = os.open(path, os.O_RDWR)
    try:
        return _cut_torn_tail(fd)
    finally:
        os.close(fd)


def _lines(path: Path) -> Iterator[tuple[str, dict | None]]:
    """Each line of a JSONL file with its record (None: torn, unparsable or not a JSON object)."""
    if not Path(path).exists():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            yield line, record if isinstance(record, dict) else None


def iter_jsonl(path: Path) -> Iterator[dict]:
    """Records of a JSONL file, one at a time (bounded memory on a million lines); torn or unparsable lines are
    skipped."""
    return (record for _, record in _lines(path) if record is not None)


def unreadable_lines(path: Path) -> int:
    """How many lines of a JSONL file hold no record (torn or edited: not a JSON object; blank lines aside)."""
    return sum(1 for line, record in _lines(path) if record is None and line.strip())


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; torn or unparsable lines are skipped."""
    return list(iter_jsonl(path))


def rank_record_files(output_dir: Path) -> list[Path]:
    """Every rank's manifest record file, by rank."""
    return _rank_paths(output_dir, "rank-")


def _rank_paths(output_dir: Path, prefix: str) -> list[Path]:
    folder = Path(output_dir) / RECORDS
    if not folder.is_dir():
        return []
    paths = [p for p in folder.glob(f"{prefix}*.jsonl") if p.name[len(prefix):-len(".jsonl")].isdigit()]
    return sorted(paths, key=lambda p: int(p.name[len(prefix):-len(".jsonl")]))


def has_records(output_dir: Path) -> bool:
    """Whether a run recorded any sample here, finished or failed (manifest, failures or a rank's file)."""
    output_dir = Path(output_dir)
    paths = [output_dir / MANIFEST, output_dir / FAILURES, *_rank_paths(output_dir, "rank-"),
             *_rank_paths(output_dir, "failures-rank-")]
    return any("id" in record for path in paths for record in iter_jsonl(path))


def latest_records(output_dir: Path, failures: bool = False) -> list[dict]:
    """The manifest's (or failures') records merged with every rank file's: the latest record of each id, in the
    order ids first appeared."""
    name, prefix = (FAILURES, "failures-rank-") if failures else (MANIFEST, "rank-")
    latest: dict = {}
    for path in [Path(output_dir) / name, *_rank_paths(output_dir, prefix)]:
        for record in read_jsonl(path):
            if "id" in record:
                latest[record["id"]] = record
    return list(latest.values())


def _index(paths: list[Path]) -> dict[str, tuple[int, int]]:
    """id -> (file, byte offset) of its latest record, in the order ids first appeared; read line by line, so the
    memory is the ids, not the records."""
    latest: dict[str, tuple[int, int]] = {}
    for i, path in enumerate(paths):
        if not path.exists():
            continue
        with open(path, "rb") as f:
            offset = 0
            for line in f:
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    record = None
                if isinstance(record, dict) and "id" in record:
                    latest[record["id"]] = (i, offset)  # a dict keeps a key where it was first inserted
                offset += len(line)
    return latest


def _records_at(paths: list[Path], index: dict[str, tuple[int, int]]) -> Iterator[dict]:
    """The records an ``_index`` points at, one at a time."""
    files = [open(path, "rb") if path.exists() else None for path in paths]
    try:
        for i, offset in index.values():
            files[i].seek(offset)
            yield json.loads(files[i].readline())
    finally:
        for f in files:
            if f is not None:
                f.close()


def assemble(output_dir: Path, remove_rank_files: bool = False, on_record=None) -> tuple[int, list[dict]]:
    """Write ``manifest.jsonl`` (each id's latest record, in the order ids first appeared) and ``failures.jsonl``
    from the union of the existing ones and the rank files, each atomically, streaming: the memory is the ids, not
    the records (a failure record is dropped once its sample has a manifest record). ``on_record`` sees each
    manifest record as it is written (the summary's means). Optionally removes the rank files afterwards. Returns
    (the number of manifest records, the failure records)."""
    output_dir = Path(output_dir)
    paths = [output_dir / MANIFEST, *_rank_paths(output_dir, "rank-")]
    index = _index(paths)
    if index or paths[0].exists():
        with atomic_write(paths[0]) as tmp, open(tmp, "w") as out:
            for record in _records_at(paths, index):
                out.write(json.dumps(record) + "\n")
                if on_record is not None:
                    on_record(record)
    failures = [f for f in latest_records(output_dir, failures=True) if f["id"] not in index]
    if failures or (output_dir / FAILURES).exists():
        atomic_write_bytes(output_dir / FAILURES, "".join(json.dumps(r) + "\n" for r in failures).encode())
    if remove_rank_files:
        remove_merged(output_dir)
    return len(index), failures


def remove_merged(output_dir: Path) -> None:
    """Remove the rank files once ``manifest.jsonl`` and ``failures.jsonl`` hold their records, and their folder
    (``records/`` is there during a run only) unless something else is in it."""
    for path in _rank_paths(output_dir, "rank-") + _rank_paths(output_dir, "failures-rank-"):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty (a file that is not ours), or already gone
        (Path(output_dir) / RECORDS).rmdir()


def file_entry(data: bytes) -> dict:
    """What a record says of one file it lists: its size and SHA-256, computed from the bytes as they are written."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def listed_files(record: dict) -> dict[str, dict | None]:
    """The files a record lists (relative paths) with their recorded size and checksum (None: a record of a run
    that wrote none)."""
    if "files" in record:
        return dict(record["files"])
    return {rel: None for rel in (record.get("shard") or record.get("latent"), record.get("recon"),
                                  record.get("edit"), record.get("grid")) if rel}


def damage(output_dir: Path, record: dict, full: bool = False, digests: dict | None = None) -> str | None:
    """Why a finished sample's files cannot be trusted (``missing recon/x.png``, ``latents/x.safetensors has 100
    bytes, not 5096``, ``... fails its checksum``), or None. Stat only, unless ``full``: then every file is
    re-read and re-hashed (same-size corruption), and a latent file of a record without checksums is loaded."""
    files = listed_files(record)
    if not (record.get("shard") or record.get("latent")):
        return "no latent file listed"
    for rel, entry in files.items():
        path = Path(output_dir) / rel
        try:
            size = path.stat().st_size
        except OSError:
            return f"missing {rel}"
        if entry is not None and size != entry["size"]:
            return f"{rel} has {size} bytes, not {entry['size']}"
        if not full:
            continue
        try:
            digests = {} if digests is None else digests  # a shard holds many samples: hashed once per check
            if rel not in digests:
                digests[rel] = file_digest(path)
            if entry is not None and digests[rel] != entry["sha256"]:
                return f"{rel} fails its checksum"
            if entry is None and rel.endswith(".safetensors"):
                from preciseinv.outputs.latents import load_latent

                load_latent(path)
        except Exception as err:  # unreadable: permissions, I/O error, not a latent file
            return f"{rel} is unreadable ({type(err).__name__})"
    return None


def source_change(record: dict, full: bool = False) -> str | None:
    """Why a finished sample's image file is not the one it was inverted from (another size; ``full``: another
    checksum), or None: also None for a record without ``source_file``, a source that is not a file (a WebDataset
    member) and a file no longer there (what was inverted from it is kept)."""
    entry, source = record.get("source_file"), record.get("source")
    if not entry or not source:
        return None
    path = Path(source)
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size != entry["size"]:
        return f"its image {source} changed since it was inverted ({size} bytes, not {entry['size']})"
    if full and file_digest(path) != entry["sha256"]:
        return f"its image {source} changed since it was inverted (another checksum)"
    return None


DAMAGED = "damaged.jsonl"  # what ``python -m preciseinv.manifest DIR --verify`` found damaged: {id, why} per line


def verify(output_dir: Path, full: bool = False, inputs: dict[str, dict] | None = None,
           redo: Callable[[dict], str | None] | None = None) -> tuple[set[str], dict[str, str]]:
    """(ids whose latest record's files are all there, {id: why not} for the others), streaming the manifest and
    the rank files: the memory is the ids, not the records. The samples a ``manifest --verify`` listed in
    ``damaged.jsonl`` are re-hashed even when ``full`` is off (damage of the same size escapes a stat).
    ``inputs``, when given, is filled in the same pass with each id's latest ``source``, ``prompt`` and ``target``:
    what a rerun compares its inputs with (a folder image keeps its path when its id changes; an edit whose prompts
    changed is redone). ``redo(record)``, when given, names a reason to invert a sample with intact files again
    (None: keep it)."""
    output_dir = Path(output_dir)
    listed = {record.get("id") for record in iter_jsonl(output_dir / DAMAGED)}
    status: dict[str, str | None] = {}
    digests: dict[str, str] = {}
    for path in [output_dir / MANIFEST, *_rank_paths(output_dir, "rank-")]:
        for record in iter_jsonl(path):
            if "id" in record:
                deep = full or record["id"] in listed
                status[record["id"]] = (damage(output_dir, record, deep, digests) or source_change(record, deep)
                                        or (redo(record) if redo is not None else None))
                if inputs is not None:
                    inputs[record["id"]] = {k: record[k] for k in ("source", "prompt", "target") if k in record}
    good = {i for i, why in status.items() if why is None}
    return good, {i: why for i, why in status.items() if why is not None}


def finished_ids(output_dir: Path, full: bool = False) -> set[str]:
    """Ids whose latest record (manifest or a rank file) lists files that are all there with their recorded sizes
    (``full``: and checksums): what a rerun skips."""
    return verify(output_dir, full)[0]
