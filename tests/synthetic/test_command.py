"""synthetic/command.py and synthetic/__main__.py: the synthesize command line, in this process and as
``python -m histoseg.synthetic``; one-line usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from histoseg.synthetic import (
    main,
)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--n", "1", "--width", "400", "--height", "300", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "synthetic_00.tif") in printed and "manifest.json" in printed
    assert (out / "synthetic_00.labels.tif").exists()
    assert main(["--out", str(out), "--width", "10"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_python_dash_m_histoseg_synthetic_writes_a_dataset(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "m"
    args = ["--out", str(out), "--n", "1", "--width", "128", "--height", "96", "--seed", "5"]
    result = subprocess.run(
        [sys.executable, "-m", "histoseg.synthetic", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    assert json.loads((out / "manifest.json").read_text())["slides"][0]["width"] == 128
    bad = subprocess.run(
        [sys.executable, "-m", "histoseg.synthetic", "--out", str(out), "--n", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1


def test_corrections_bypasses_the_contract_synthesize_usage_error_is_one_line(capsys):
    """Issue 28, class 1 (one error path for every command): argparse's usage block never reaches the user."""
    from tests.reliability.helpers import expect_one_error

    args = ("synthesize", "--out", "x", "--n", "abc")
    expect_one_error(capsys, ["argument --n: invalid int value: 'abc'", "--help"], *args)
    assert "usage:" not in capsys.readouterr().err
