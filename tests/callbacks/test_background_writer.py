"""The writer thread: files and records written off the calling thread, in batch order, nothing finished lost."""

import shutil
import hashlib
import threading
from types import SimpleNamespace

import pytest
import torch

from preciseinv.callbacks.writer import InversionWriter
from preciseinv.engine import InversionEngine
from preciseinv.methods import PreciseInv
from preciseinv.models import load_model
from preciseinv.outputs.latents import load_latent
from preciseinv.outputs.records import rank_files, read_jsonl


class ThreadRecordingWriter(InversionWriter):
    """The files writer, noting which thread committed each record."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.threads = []

    def commit(self, record: dict) -> None:
        self.threads.append(threading.current_thread().name)
        super().commit(record)


@pytest.fixture(scope="module")
def batches(tiny_sd):
    """Two real predictions of the tiny SD pipeline (two images each) and a module holding the engine."""
    torch.manual_seed(0)
    engine = InversionEngine(load_model(str(tiny_sd)), PreciseInv(eta=1e-3, max_iters=5), 2)
    predictions = []
    for b in range(2):
        out = engine.run(torch.rand(2, 3, 32, 32) * 2 - 1)
        ids = [f"b{b}-{i}" for i in range(2)]
        predictions.append({"id": ids, "source": ids, "prompt": ["", ""], "failures": [], "output": out})
    return predictions, SimpleNamespace(engine=engine)


def write(writer, predictions, module):
    for i, prediction in enumerate(predictions):
        writer.write_on_batch_end(None, module, prediction, None, None, i)


def test_writes_run_on_the_writer_thread_in_batch_order(tmp_path, batches):
    predictions, module = batches
    writer = ThreadRecordingWriter(str(tmp_path), background=True, max_pending=1)
    write(writer, predictions, module)
    writer.flush()
    records = read_jsonl(rank_files(tmp_path, 0)[0])
    assert [r["id"] for r in records] == ["b0-0", "b0-1", "b1-0", "b1-1"]
    assert set(writer.threads) == {"preciseinv-writer_0"} and threading.current_thread().name not in writer.threads
    for record, i in zip(records, (0, 1, 0, 1)):
        tensors, meta = load_latent(tmp_path / record["latent"])
        batch = predictions[int(record["id"][1])]["output"]
        torch.testing.assert_close(tensors["latent"], batch.latent[i].cpu())
        assert (tmp_path / record["recon"]).stat().st_size > 0 and meta["id"] == record["id"]


def test_auto_writes_inline_on_a_cpu(tmp_path, batches):
    predictions, module = batches
    writer = ThreadRecordingWriter(str(tmp_path))  # background=auto
    write(writer, predictions, module)
    assert writer.background == torch.cuda.is_available()
    assert set(writer.threads) == {"preciseinv-writer_0" if writer.background else threading.current_thread().name}


def test_inline_writes_match_background_writes(tmp_path, batches):
    predictions, module = batches
    written = {}
    for background in (True, False):
        out = tmp_path / str(background)
        writer = ThreadRecordingWriter(str(out), background=background)
        write(writer, predictions, module)
        writer.flush()
        written[background] = read_jsonl(rank_files(out, 0)[0])
        assert set(writer.threads) == ({"preciseinv-writer_0"} if background else {threading.current_thread().name})
        for record in written[background]:  # each checksum is of the bytes written (safetensors orders the
            for rel, entry in record.pop("files").items():  # header's metadata keys as it likes: not across writes)
                assert entry["sha256"] == hashlib.sha256((out / rel).read_bytes()).hexdigest()
                record[rel] = entry["size"]
    assert written[True] == written[False]


@pytest.mark.parametrize("background", [True, False])
def test_a_failed_write_stops_the_run_and_what_was_written_stays(tmp_path, batches, background):
    predictions, module = batches
    writer = InversionWriter(str(tmp_path), background=background)
    write(writer, predictions[:1], module)
    writer.flush()
    shutil.rmtree(tmp_path / "recon")
    (tmp_path / "recon").write_text("not a folder")  # the second batch's PNGs cannot be written
    with pytest.raises(OSError):  # inline: at once; on the thread: when the run waits for its writes
        write(writer, predictions[1:], module)
        writer.flush()
    records = read_jsonl(rank_files(tmp_path, 0)[0])
    assert [r["id"] for r in records] == ["b0-0", "b0-1"]  # published only with complete files


def test_a_stop_publishes_every_queued_batch(tmp_path, batches):
    from preciseinv.preemption import Interrupted

    predictions, module = batches
    writer = InversionWriter(str(tmp_path), background=True, max_pending=4)
    write(writer, predictions, module)
    writer.on_exception(None, module, Interrupted(15))  # what Lightning calls when the stop request is seen
    assert [r["id"] for r in read_jsonl(rank_files(tmp_path, 0)[0])] == ["b0-0", "b0-1", "b1-0", "b1-1"]


class SlowWriter(InversionWriter):
    """Writes that take 0.2 s a batch: the run's pace is set by them."""

    def write_batch(self, job) -> None:
        import time

        time.sleep(0.2)
        super().write_batch(job)

    def write_summary(self, remove_rank_files: bool = False) -> dict:  # these predictions carry no metrics
        return {}


@pytest.mark.parametrize("background", [True, False])
def test_the_recorded_pace_includes_the_last_writes(tmp_path, batches, background):
    """run.json last_run: with writes the slow part, the steady rate is what the writes allow (2 images per 0.2 s,
    the first batch left out), whether they wait on the thread or run inline: the last batch ends when its writes
    do, not when it was queued."""
    import json

    predictions, module = batches
    (tmp_path / "run.json").write_text("{}")
    writer = SlowWriter(str(tmp_path), background=background, max_pending=2)
    write(writer, predictions * 3, SimpleNamespace(engine=module.engine, device=torch.device("cpu")))
    trainer = SimpleNamespace(strategy=SimpleNamespace(barrier=lambda name: None, reduce=lambda t, reduce_op: t),
                              is_global_zero=True, world_size=1)
    writer.on_predict_end(trainer, SimpleNamespace(engine=module.engine, device=torch.device("cpu")))
    pace = json.loads((tmp_path / "run.json").read_text())["last_run"]
    assert pace["images"] == 12 and pace["batches"] == 6 and pace["ranks"] == 1
    assert 5.0 < pace["steady_images_per_second"] <= 10.5  # 10 images / >= 5 writes of 0.2 s (queued: up to 6)
