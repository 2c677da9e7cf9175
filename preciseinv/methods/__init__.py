"""Inversion methods: PreciseInv (the paper), the baselines (DDIM inversion, ReNoise, EasyInv, GNRI, EDICT, BDIA,
BELM), and the autoencoder ceiling.

Every method has ``invert(denoiser, sampler, x0, cond, hooks=None) -> InversionResult`` and ``describe()``
(``hooks``: the ``LoopHooks`` a method running the solver loop hands it; the one-update methods have none to run);
a method whose
reconstruction is not the sampler run from x*_T also has ``sample(denoiser, sampler, latent, cond, noises)`` and
names it in ``describe()["reconstruction"]`` (the latent file records it; ``reconstruct_file`` honours it).
"""

from preciseinv.methods.base import InversionResult
from preciseinv.methods.bdia import BDIA
from preciseinv.methods.belm import BELM
from preciseinv.methods.ceiling import Ceiling
from preciseinv.methods.ddim import DDIMInversion
from preciseinv.methods.easyinv import EasyInv
from preciseinv.methods.edict import EDICT
from preciseinv.methods.gnri import GNRI
from preciseinv.methods.preciseinv import PreciseInv
from preciseinv.methods.renoise import ReNoise
from preciseinv.methods.subproblem import NoiseSubproblem

METHODS = {"preciseinv": PreciseInv, "ddim": DDIMInversion, "renoise": ReNoise, "easyinv": EasyInv,
           "gnri": GNRI, "edict": EDICT, "bdia": BDIA, "belm": BELM, "ceiling": Ceiling}
EXACT_METHODS = tuple(key for key, method in METHODS.items() if getattr(method, "exact", False))  # no eta to meet

__all__ = ["BDIA", "BELM", "EDICT", "EXACT_METHODS", "GNRI", "METHODS", "Ceiling", "DDIMInversion", "EasyInv",
           "InversionResult", "NoiseSubproblem", "PreciseInv", "ReNoise"]
