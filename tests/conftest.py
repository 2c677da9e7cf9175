import os
import sys
from pathlib import Path

import pytest

# Offline by construction: nothing may reach the Hub, W&B never prompts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    from tiny import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_pixel(tmp_path_factory) -> Path:
    from tiny import save_tiny_pixel

    return save_tiny_pixel(tmp_path_factory.mktemp("models"))
