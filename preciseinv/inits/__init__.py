"""Where each step's solver starts (``init=``, a part of method=preciseinv): ``ddim``, the paper's one
DDIM-inversion step, and ``learned``, a predictor of the step's solution trained on finished inversions by
``python -m preciseinv.learn_init``, kept per sample only where its residual is below the DDIM start's."""

from preciseinv.inits.base import Start
from preciseinv.inits.ddim import DDIMStart
from preciseinv.inits.learned import LearnedStart

__all__ = ["Start", "DDIMStart", "LearnedStart"]
