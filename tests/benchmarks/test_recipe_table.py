"""benchmarks/recipe_table.py: mean (sd) over seeds from both scripts' JSON files, known answers."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TILES = ["adenine", "alport", "healthy", "iri", "ntn", "uuo"]


@pytest.fixture
def table(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import recipe_table

    yield recipe_table
    sys.modules.pop("recipe_table", None)


def _conf(tp_int: int) -> list[list[int]]:
    conf = np.zeros((5, 5), dtype=np.int64)
    conf[1, 1], conf[1, 2], conf[2, 2] = tp_int, 2, 4  # interstitium Dice 2 tp / (2 tp + 2)
    return conf.tolist()


def test_rows_from_bench_flash_and_finetune_files(table, tmp_path, capsys):
    flash = []
    for seed, err in ((0, 2.0), (1, -4.0)):  # signed errors of every tile in that seed
        tiles = [{"tile": t, "error_pp": err, "train_cpu_s": 10.0 + seed} for t in TILES]
        payload = {
            "args": {"seed": seed},
            "results": {"dense": {"confusion": _conf(6 + 6 * seed), "tiles": tiles}},
        }
        flash.append(tmp_path / f"f{seed}.json")
        flash[-1].write_text(json.dumps(payload))
    model = {"confusion": _conf(1), "if_error_pp": -3.0, "train_cpu_s": 7.0}
    pft = tmp_path / "pft.json"
    pft.write_text(
        json.dumps({"per_seed": {"0": {t: {"base, whole tile": model, "base": {}} for t in TILES}}})
    )
    assert table.main(["--row", "A", *map(str, flash), "--row", "B", str(pft)]) == 0
    out = capsys.readouterr().out
    # A: interstitium Dice 12/14 and 24/26 -> mean 0.890, sd 0.033; |err| 2 and 4 -> 3.0 (1.4);
    # signed 2 and -4 -> -1.0 (4.2); CPU 10 and 11 -> 10.5 (0.7)
    a = np.array([12 / 14, 24 / 26])
    assert f"| A | 0,1 | {a.mean():.3f} ({a.std(ddof=1):.3f}) |" in out
    assert "| 3.0 (1.4) | -1.0 (4.2) | 10.5 (0.7) |" in out
    # B: pooled over six tiles, Dice 2*6/(12+12) = 0.5; one seed: no spread
    assert "| B | 0 | 0.500 |" in out and "| 3.0 | -3.0 | 7.0 |" in out
    assert "| A | -1.0 | -1.0 | -1.0 | -1.0 | -1.0 | -1.0 |" in out
