"""The one place that knows the logger kinds: a Lightning logger, or its config node, by kind."""

from __future__ import annotations

KINDS = {"WandbLogger": "wandb", "CSVLogger": "csv", "TensorBoardLogger": "tensorboard"}


def logger_kind(logger) -> str | None:
    """``wandb`` | ``csv`` | ``tensorboard`` for a logger instance or a ``logger`` config node (its ``_target_``);
    None for none or another kind."""
    if not logger:
        return None
    name = str(logger.get("_target_", "")) if hasattr(logger, "get") else type(logger).__name__
    return KINDS.get(name.rsplit(".", 1)[-1])
