"""``writer=webdataset``: latents (and reconstructions) in WebDataset .tar shards, one series per rank.

Each shard is written under a temporary name and renamed when it closes (``maxcount`` samples, or the end of the
run); only then are its samples' manifest lines appended. A run killed mid-shard loses that shard's samples from
the manifest, and the rerun redoes them: nothing half-written is ever published.

Members per sample (key = a running number; the id is in the JSON): ``<key>.safetensors`` (the same bytes as a
``latents/<id>.safetensors`` file), ``<key>.json`` (the manifest record), ``<key>.png`` (reconstruction, optional).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from preciseinv.callbacks.writer import InversionWriter
from preciseinv.outputs.images import png_bytes
from preciseinv.outputs import latent_bytes
from preciseinv.outputs.records import file_digest


class ShardWriter(InversionWriter):
    def __init__(self, output_dir: str, save_recon: bool = False, maxcount: int = 1000,
                 run_config: dict | None = None, background: bool | str = "auto", max_pending: int = 2):
        super().__init__(output_dir, save_recon, run_config, background, max_pending)
        self.maxcount = maxcount
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.shard_index, self.count = 0, 0
        self.sink = self.tmp_path = self.shard_rel = None
        self.pending: list[dict] = []

    def _open(self) -> None:
        import webdataset as wds

        self.shard_rel = f"shards/{self.stamp}-rank{self.rank:03d}-{self.shard_index:06d}.tar"
        final = self._inside(self.shard_rel)
        final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = final.with_name(f".{final.name}.tmp")
        self.sink = wds.TarWriter(str(self.tmp_path))

    def store(self, sample_id: str, latent, recon, meta: dict, noises: dict | None = None) -> dict:
        if self.sink is None:
            self._open()
        key = f"{self.count:09d}"
        self.count += 1
        member = {"__key__": key, "safetensors": latent_bytes(latent, meta, noises), "json": json.dumps(meta).encode()}
        if self.save_recon:
            member["png"] = png_bytes(recon)
        self.sink.write(member)
        return {"shard": self.shard_rel, "key": key, "latent": None, "recon": None, "files": {}}

    def commit(self, record: dict) -> None:
        self.pending.append(record)
        if len(self.pending) >= self.maxcount:
            self.close_shard()

    def close_shard(self) -> None:
        """Rename the finished shard into place, then publish its samples."""
        if self.sink is None:
            return
        self.sink.close()
        with open(self.tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp_path, self._inside(self.shard_rel))
        final = self._inside(self.shard_rel)
        entry = {"size": final.stat().st_size, "sha256": file_digest(final)}  # read once, on the writer's thread
        self.sink, self.shard_index = None, self.shard_index + 1
        for record in self.pending:  # each sample's record lists its shard, with the shard's size and checksum
            super().commit({**record, "files": {**record.get("files", {}), record["shard"]: entry}})
        self.pending = []

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """Preempted (SIGTERM / SIGINT): publish the samples of the open shard, which are complete."""
        from preciseinv.preemption import Interrupted

        super().on_exception(trainer, pl_module, exception)  # the queued writes first
        if isinstance(exception, Interrupted):
            self.close_shard()

    def on_predict_end(self, trainer, pl_module) -> None:
        self.flush()
        self.close_shard()
        super().on_predict_end(trainer, pl_module)


def read_shard_latents(path: str | Path):
    """Yield (id, latent (C, h, w), metadata) from a shard written by ``ShardWriter``."""
    import tarfile

    from safetensors.torch import load

    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".safetensors"):
                data = tar.extractfile(member).read()
                meta = json.loads(tar.extractfile(member.name[: -len("safetensors")] + "json").read())
                yield meta["id"], load(data)["latent"], meta
