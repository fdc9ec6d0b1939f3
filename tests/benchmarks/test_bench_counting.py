"""The counting benchmark runs (smoke mode) through what ships, so its published table cannot rot."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_counting_quick(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_counting

    assert bench_counting.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| synthetic")]
    designs = {row[2].strip() for row in rows}
    assert designs == {"random", "grid (matern)", "grid (random)", "stratified"}
    headline = [row for row in rows if row[3].strip() == "headline"]
    assert len(headline) == 4
    for row in headline:
        coverage = float(row[6].split()[0])
        assert 0.0 <= coverage <= 1.0 and float(row[7]) > 0  # a coverage, a positive mean half-width
    sys.modules.pop("bench_counting", None)


def test_true_fraction_known_answer():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_counting as b
    import numpy as np

    labels = np.array([[1, 1, 2, 3], [0, 4, 255, 1]], np.uint8)
    assert b.true_fraction(labels) == 3 / 5
