"""The on-disk contract of an output_dir, in one package:

- ``atomic``: write-then-rename with the umask's mode;
- ``latents``: latent files (safetensors + metadata), read back with clear errors;
- ``images``: PNGs of (3, H, W) tensors;
- ``records``: per-rank record files, ``manifest.jsonl`` and ``failures.jsonl`` assembled from them, resume ids;
- ``summary``: ``summary.json`` over the assembled manifest;
- ``run_record``: ``run.json`` and the check that a rerun resumes with the same settings;
- ``lock``: ``.lock``, one run at a time in an output_dir.
"""

from preciseinv.outputs.atomic import atomic_write, atomic_write_bytes
from preciseinv.outputs.latents import (extra_tensors, latent_bytes, load_latent, noise_maps, save_latent,
                                        stored_noises)
from preciseinv.outputs.records import append_jsonl, assemble, finished_ids, read_jsonl, repair_jsonl

__all__ = ["append_jsonl", "assemble", "atomic_write", "atomic_write_bytes", "extra_tensors", "finished_ids",
           "latent_bytes", "load_latent", "noise_maps", "read_jsonl", "repair_jsonl", "save_latent", "stored_noises"]
