"""The precision/TTA benchmark runs end to end in its smoke mode (so it cannot rot)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_precision_tta.py"


def test_bench_precision_tta_quick_prints_every_arm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("bench_precision_tta", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", ["bench_precision_tta.py", "--quick", "--repeat", "2"])
    bench.main()
    out = capsys.readouterr().out
    for needle in ("auto tries", "precision 32:", "precision auto:", "check on the first tiles",
                   "speed-up fp32 / auto", "label-map pixel agreement", "interstitial fraction fp32", "tta ("):  # fmt: skip
        assert needle in out, needle
