"""The training-cohort benchmark runs (smoke mode) through what ships, so its published table cannot rot."""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def test_bench_training_cohort_quick(capsys, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_training_cohort

    assert bench_training_cohort.main(["--quick", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 2 ")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0]]
    assert cells[1] == "scribbles"
    cold, warm = float(cells[2]), float(cells[3])
    assert 0 < warm < cold  # the warm setup read the cache
    assert float(cells[5]) > 0 and float(cells[6]) > 0 and float(cells[9]) > 0  # peak RSS, loader ratio
    sys.modules.pop("bench_training_cohort", None)


def test_tiled_image_repeats_its_base():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_training_cohort import TiledImage

    base = np.arange(12, dtype=np.uint8).reshape(3, 4)
    tiled = TiledImage(base, 7, 9)
    assert tiled.shape == (7, 9)
    assert tiled[2:5, 3:6].tolist() == [[11, 8, 9], [3, 0, 1], [7, 4, 5]]
    assert tiled[6:10, 8:12].tolist() == [[0]]  # clipped at the image's edge
