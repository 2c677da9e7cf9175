import os
from pathlib import Path

import pytest

# Offline by construction: nothing may reach the Hub, W&B never prompts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    from preciseinv.tiny import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_pixel(tmp_path_factory) -> Path:
    from preciseinv.tiny import save_tiny_pixel

    return save_tiny_pixel(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_sd_v(tmp_path_factory) -> Path:
    from preciseinv.tiny import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("models"), prediction_type="v_prediction")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    from preciseinv.tiny import save_tiny_sdxl

    return save_tiny_sdxl(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory) -> Path:
    from preciseinv.tiny import save_tiny_sd3

    return save_tiny_sd3(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_lcm(tmp_path_factory) -> Path:
    from preciseinv.tiny import save_tiny_lcm

    return save_tiny_lcm(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_sdxl_turbo(tmp_path_factory) -> Path:
    from preciseinv.tiny import save_tiny_sdxl

    return save_tiny_sdxl(tmp_path_factory.mktemp("models"), turbo=True)


@pytest.fixture(scope="session")
def tiny_lora(tiny_sd, tmp_path_factory) -> Path:
    from preciseinv.tiny import save_tiny_lora

    return save_tiny_lora(tiny_sd, tmp_path_factory.mktemp("models"))
