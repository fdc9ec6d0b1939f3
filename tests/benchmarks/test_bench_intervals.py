"""The interval-coverage benchmark runs (smoke mode), so its published table cannot rot."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_intervals_quick(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_intervals

    assert bench_intervals.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| synthetic")]
    assert len(rows) == 4  # colour + dilate-2, n = 50 and 200
    assert "minimum PPI coverage" in out
    sys.modules.pop("bench_intervals", None)


def test_dilated_tubules_bias_the_model_only_fraction_downwards():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_intervals as b
    import numpy as np

    truth = np.full((40, 40), b.INT, np.uint8)
    truth[10:20, 10:20] = b.TUB
    grown = b.dilate_tubules(truth, 2)
    assert b.interstitial_fraction(grown) < b.interstitial_fraction(truth)
    assert np.all(grown[truth == b.TUB] == b.TUB)  # only interstitium changes
    # a 10x10 square grown by the radius-2 disk (x^2 + y^2 <= 4): 2 px along each side, and only the
    # diagonal offset (1, 1) at each corner
    assert int((grown != truth).sum()) == 4 * 10 * 2 + 4 * 1
