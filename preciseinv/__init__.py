"""preciseinv: precise diffusion inversion (PreciseInv, NeurIPS 2025) at dataset scale.

Importing the package is light; the API below loads torch and diffusers on first use.
"""

__version__ = "0.1.0"
__all__ = ["Inverter", "reconstruct_file"]


def __getattr__(name):
    if name in __all__:
        from preciseinv import api

        return getattr(api, name)
    raise AttributeError(f"module 'preciseinv' has no attribute {name!r}")
