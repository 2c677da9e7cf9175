"""The on-disk contract: atomic writes, latent files (safetensors + metadata), images, manifest records."""

from preciseinv.outputs.atomic import atomic_write, atomic_write_bytes
from preciseinv.outputs.latents import (extra_tensors, latent_bytes, load_latent, noise_maps, save_latent,
                                        stored_noises)

__all__ = ["atomic_write", "atomic_write_bytes", "extra_tensors", "latent_bytes", "load_latent", "noise_maps",
           "save_latent", "stored_noises"]
