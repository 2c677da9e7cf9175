import os
from pathlib import Path

import pytest

# Offline by construction: nothing may reach the Hub, W&B never prompts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("PYTEST_XDIST_WORKER"):  # workers share the cores: one thread each, in their subprocesses too
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


# `-n 2 --dist loadfile` hands each worker whole files, the next one whenever a worker is nearly done: queued longest
# first (seconds per file from `pytest --durations=0`, summed), no worker is left alone with a long file at the end.
LONGEST_FIRST = ("test_fit.py", "test_reliability.py", "test_learn_init.py", "test_benchmarks.py",
                 "accel/test_compile.py", "test_notebook.py", "test_edit_interpolate.py", "test_presets.py")


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's own order (most tests first) would undo it
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).parent
    rank = {str(tests / name): i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(str(item.path), len(rank)))  # stable: the rest as collected


def _tiny(factory, builder: str, **kwargs) -> Path:
    """Build a tiny random-weight pipeline with ``preciseinv.testing.tiny.<builder>`` and save it once per session."""
    import preciseinv.testing.tiny

    return getattr(preciseinv.testing.tiny, builder)(factory.mktemp("models"), **kwargs)


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
    from preciseinv.testing.tiny import save_tiny_lora

    return save_tiny_lora(tiny_sd, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_pixel(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "save_tiny_pixel")


@pytest.fixture(scope="session")
def fit_in_process():
    """``fit(*overrides)``: ``fit.run`` on the composed config, in this process: the command's code after its
    argument parsing, without a new interpreter's start-up; returns the summary and raises what the command prints
    as one line. The command itself (argument parsing, one-line errors, signals, DDP) is tested with subprocesses."""
    from hydra import compose, initialize_config_dir

    from preciseinv.fit import run
    from preciseinv.presets import CONFIG_DIR, register_resolvers

    def fit(*overrides: str) -> dict:
        register_resolvers()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("fit", overrides=list(overrides))
        return run(cfg)

    return fit
