"""A plain (non-editable) install carries the configs, the embedded model and the sample images."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_install_runs_from_any_directory(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), ROOT], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("preciseinv-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("preciseinv/configs/fit.yaml", "preciseinv/configs/model/sd15.yaml",
                   "preciseinv/datamodules/folder.py", "preciseinv/callbacks/writer.py",
                   "preciseinv/assets/mini-ddpm/unet/diffusion_pytorch_model.safetensors",
                   "preciseinv/assets/images/astronaut.png"):
        assert needed in names, needed
    packages = sorted(str(init.parent.relative_to(ROOT)) for init in Path(ROOT, "preciseinv").rglob("__init__.py"))
    missing = [pkg for pkg in packages if f"{pkg}/__init__.py" not in names]
    assert not missing, f"subpackages left out of the wheel (pyproject's packages list): {missing}"
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)  # what pip install puts in site-packages (dependencies come from this venv)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "preciseinv.fit", "method=ddim", "~logger", "output_dir=out"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "out" / "summary.json").is_file() and len(list((work / "out" / "latents").iterdir())) == 4
    # every subpackage from the install, not from the source tree (an editable install's finder would hide a gap)
    code = ("import importlib, pkgutil, preciseinv; print('\\n'.join(importlib.import_module(m.name).__file__ for m in "
            "pkgutil.walk_packages(preciseinv.__path__, 'preciseinv.') if m.ispkg))")
    probe = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
    files = probe.stdout.split()
    assert probe.returncode == 0 and len(files) >= 12, probe.stderr[-2000:]
    assert all(f.startswith(str(target)) for f in files), files


def test_importing_the_package_stays_light():
    code = ("import sys, preciseinv; heavy = [m for m in ('torch', 'diffusers', 'transformers', 'lightning', 'wandb',"
            " 'webdataset') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
