"""The on-disk contract: atomic writes, latent files (safetensors + metadata), images, manifest records."""

from preciseinv.outputs.atomic import atomic_write, atomic_write_bytes
from preciseinv.outputs.latents import load_latent, save_latent

__all__ = ["atomic_write", "atomic_write_bytes", "load_latent", "save_latent"]
