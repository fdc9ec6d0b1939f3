"""The inference benchmark runs end to end in its smoke mode (so it cannot rot)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import tifffile

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_inference.py"


def test_bench_inference_quick_prints_every_arm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("bench_inference", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", ["bench_inference.py", "--quick", "--cache-dir", str(tmp_path)])
    monkeypatch.delenv("BENCH_THREADS", raising=False)
    bench.main()
    out = capsys.readouterr().out
    for needle in ("1. pipeline ceiling", "workers=0:", "workers=2:", "workers=0, fp32 (--precision 32):",
                   "reading alone", "TIFF writing alone",
                   "fp32: end-to-end", "fp32 + channels-last", "bf16 autocast + channels-last", "<- auto", "ratio", "[cuda]"):  # fmt: skip
        assert needle in out, needle
    # Constant logits (3, 1, 2, 0, -1): class 0 wins every run pixel, and skipped glass is class 0 too.
    auto = bench.auto_spec("cpu")
    for name in (f"A.w0.{auto}", f"A.w2.{auto}", "A.w0.32"):
        labels = tifffile.imread(tmp_path / "out" / f"{name}.tif")
        assert labels.shape == (256, 256) and not labels.any()
    assert sorted(p.name for p in tmp_path.glob("[SAB]*.tif")) == ["A256.tif", "B256.tif", "S256.tif"]
