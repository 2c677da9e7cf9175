"""Running at the hardware's pace: the speed settings (precision, TF32, compile, channels_last, cuDNN benchmark)
applied in one place for fit, the API and the benchmark, and an audit of host synchronisations in the solver's inner
iteration."""

from preciseinv.accel.settings import accelerate, autocast, configure_backends
from preciseinv.accel.sync_audit import SyncAudit

__all__ = ["SyncAudit", "accelerate", "autocast", "configure_backends"]
