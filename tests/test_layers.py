"""The layer rule of docs/DESIGN.md, enforced: import-linter's contracts in pyproject.toml."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter.cli")

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on ``cwd``'s pyproject.toml, in a subprocess.

    In this process its logging set-up would disable the ``histoseg`` logger for every later test
    (``caplog`` then sees nothing).
    """
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"},
    )


def test_import_contracts_hold():
    result = lint_imports(ROOT, ROOT)
    assert result.returncode == 0, (
        "an import breaks the layer contract; run `lint-imports` for the offending chain\n" + result.stdout
    )


def test_contract_catches_an_upward_import(tmp_path):
    """The contract is not vacuous: a copy of the package with one upward import fails it."""
    copy = tmp_path / "histoseg"
    shutil.copytree(ROOT / "histoseg", copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    files = copy / "io" / "files.py"
    files.write_text(files.read_text() + "\nimport histoseg.quantify  # noqa: E402,F401\n")
    result = lint_imports(tmp_path, tmp_path)
    assert result.returncode != 0
    assert "histoseg.io.files -> histoseg.quantify" in result.stdout
