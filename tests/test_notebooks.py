"""The example notebooks run end to end (fast mode: tiny slides, a tiny U-Net, a few steps).

Each notebook is executed with nbclient in a fresh kernel of the current interpreter, with
``HISTOSEG_NOTEBOOK_FAST=1`` and ``HISTOSEG_CACHE`` in a temporary folder, and must finish
without a cell error; the numbers it prints are checked for being in range.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 300
KERNEL = "python3"


def _kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec that runs this interpreter (ipykernel's own ``python3`` spec when registered)."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().find_kernel_specs().get(KERNEL)
    if spec is not None:
        argv = json.loads((Path(spec) / "kernel.json").read_text())["argv"]
        # jupyter_client replaces a bare "python" by sys.executable; any other interpreter may lack histoseg.
        if argv and argv[0] in ("python", "python3", sys.executable):
            return KERNEL
    kernels = tmp_path / "jupyter" / "kernels" / "histoseg-test"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "histoseg test kernel",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "histoseg-test"


def _run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Execute a notebook in fast mode; return all its stdout text."""
    monkeypatch.setenv("HISTOSEG_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("HISTOSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' checkpoints (tempfile.mkdtemp)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    kernel = _kernel_name(tmp_path, monkeypatch)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=kernel,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    text = []
    figures = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", output
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                text.append(output["text"])
            if {"image/png", "image/jpeg"} & set(output.get("data", {})):
                figures += 1
    assert figures >= 2, f"{name}: expected its figures in the outputs, got {figures}"
    return "".join(text)


def _fraction(pattern: str, text: str) -> list[float]:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the notebook output:\n{text}"
    values = [float(v) for v in match.groups()]
    assert all(0.0 <= v <= 1.0 for v in values), values
    return values


def test_01_train_and_predict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _run("01_train_and_predict.ipynb", tmp_path, monkeypatch)
    assert "fast mode" in text
    assert "3 steps of 4 patches" in text
    for name in ("background", "interstitium", "tubules", "glomeruli", "other"):
        assert re.search(rf"Dice {name}\s+(\d\.\d{{3}}|nan)", text), name
    _fraction(r"interstitial fraction: reference (\d\.\d+), prediction (\d\.\d+)", text)
    assert list((tmp_path / "cache" / "synthetic-kidney").glob("*/synthetic_00.tif"))


def test_02_finetune_from_scribbles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _run("02_finetune_from_scribbles.ipynb", tmp_path, monkeypatch)
    assert "fast mode" in text
    scribbled = float(re.search(r"scribbles label (\d+\.\d)% of the pixels", text).group(1))
    assert 2.5 <= scribbled <= 3.4, scribbled  # scribble_fraction=0.03, re-rasterised at the training mpp
    assert "fine-tuned for 3 steps" in text
    _fraction(r"mean \(tissue\)\s+(\d\.\d{3})\s+(\d\.\d{3})", text)
    _fraction(r"interstitial fraction: reference (\d\.\d+), before (\d\.\d+), after (\d\.\d+)", text)
    assert list(tmp_path.glob("histoseg-nb02-*/start.ckpt")), "the start checkpoint was not saved"
