"""The notebook runs headlessly, top to bottom, so it never rots."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "tour.ipynb"


def test_tour_notebook_executes(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "preciseinv: PSNR" in outputs and "eta 0.0001" in outputs and "endpoint PSNR" in outputs
    points = re.search(r"residual curve points: \{'adamw': (\d+), 'hybrid': (\d+)\}", outputs)
    assert points and min(map(int, points.groups())) > 1, outputs  # the plot has both curves


def test_notebook_matches_its_generator():
    import nbformat

    import importlib.util

    spec = importlib.util.spec_from_file_location("make_tour", NOTEBOOK.with_name("make_tour.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cells = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells]
    assert cells == [src for _, src in module.CELLS]
