import os
from pathlib import Path

import pytest

# Offline by construction: nothing may reach the Hub, W&B never prompts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def _tiny(factory, builder: str, **kwargs) -> Path:
    """Build a tiny random-weight pipeline with ``preciseinv.tiny.<builder>`` and save it once per session."""
    import preciseinv.tiny

    return getattr(preciseinv.tiny, builder)(factory.mktemp("models"), **kwargs)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "save_tiny_sd")


@pytest.fixture(scope="session")
def tiny_sd_v(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "save_tiny_sd", prediction_type="v_prediction")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "save_tiny_sdxl")


@pytest.fixture(scope="session")
def tiny_sdxl_turbo(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "save_tiny_sdxl", turbo=True)


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "save_tiny_sd3")


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "save_tiny_flux")


@pytest.fixture(scope="session")
def tiny_flux_dev(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "save_tiny_flux", guidance=True)


@pytest.fixture(scope="session")
def tiny_sd35(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "save_tiny_sd35")


@pytest.fixture(scope="session")
def tiny_lcm(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "save_tiny_lcm")


@pytest.fixture(scope="session")
def tiny_lora(tiny_sd, tmp_path_factory) -> Path:
    from preciseinv.tiny import save_tiny_lora

    return save_tiny_lora(tiny_sd, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_pixel(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "save_tiny_pixel")
