"""Inversion methods: PreciseInv (the paper) and plain DDIM inversion (the first baseline)."""

from preciseinv.methods.base import InversionResult
from preciseinv.methods.ddim import DDIMInversion
from preciseinv.methods.preciseinv import PreciseInv
from preciseinv.methods.subproblem import NoiseSubproblem

__all__ = ["DDIMInversion", "InversionResult", "NoiseSubproblem", "PreciseInv"]
