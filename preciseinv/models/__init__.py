"""Model adapters: each diffusers family behind one small interface (encode, decode, condition, predict)."""

from preciseinv.models.base import DiffusionModel
from preciseinv.models.loading import EMBEDDED_MODEL, ModelSpec, load_model

__all__ = ["DiffusionModel", "EMBEDDED_MODEL", "ModelSpec", "load_model"]
