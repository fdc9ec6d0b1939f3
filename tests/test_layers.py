"""The layer rule of docs/DESIGN.md, enforced: import-linter's contracts in pyproject.toml."""

from pathlib import Path

import pytest

importlinter_cli = pytest.importorskip("importlinter.cli")

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    code = importlinter_cli.lint_imports(
        config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True
    )
    assert code == 0, "an import breaks the layer contract; run `lint-imports` for the offending chain"


def test_contract_catches_an_upward_import(tmp_path):
    """The contract is not vacuous: a copy of the package with one upward import fails it."""
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "histoseg"
    shutil.copytree(ROOT / "histoseg", copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    files = copy / "io" / "files.py"
    files.write_text(files.read_text() + "\nimport histoseg.quantify  # noqa: E402,F401\n")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "histoseg.io.files -> histoseg.quantify" in result.stdout
