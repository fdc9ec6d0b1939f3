"""The pathology fine-tuning benchmark runs end to end (``--quick``), and its bookkeeping has known answers."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
FLASH = ROOT.parent / "shared" / "data" / "flash-mouse-pas"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_pathology_finetune

    yield bench_pathology_finetune
    sys.modules.pop("bench_pathology_finetune", None)


def test_halves_partition_the_labelled_centre_and_crops_stop_at_the_split_line(bench):
    ref = np.arange(516 * 516, dtype=np.int64).reshape(516, 516) % 5
    for side, other in bench.OPPOSITE.items():
        a, b = bench.masked_to(ref, side), bench.masked_to(ref, other)
        assert ((a != 255) ^ (b != 255)).all()  # every pixel in exactly one half
        assert int((a != 255).sum()) == 516 * 258
    # left half: level-0 columns 0..320 (62 ring + 258), all rows; label offset (62, 62) in the crop
    assert bench.crop_box("left") == (0, 0, 320, 640)
    assert bench.crop_box("right") == (320, 0, 640, 640)
    assert bench.crop_box("bottom") == (0, 320, 640, 640)


def test_dice_and_pooled_mean_sd_over_seeds(bench):
    n = len(bench.CLASSES)
    conf = np.zeros((n, n), dtype=np.int64)
    conf[1, 1], conf[1, 2], conf[2, 2] = 6, 2, 4  # interstitium: 2*6/(12+2) ; tubules 2*4/(8+2)
    d = bench.dice(conf)
    assert d["interstitium"] == pytest.approx(12 / 14) and d["tubules"] == pytest.approx(8 / 10)
    assert math.isnan(d["glomeruli"])

    def row(err: float, cpu: float) -> dict:
        return {"confusion": conf.tolist(), "if_error_pp": err, "train_cpu_s": cpu}

    results = {0: {"a": {"m": row(-4.0, 1.0)}, "b": {"m": row(2.0, 3.0)}}, 1: {"a": {"m": row(-2.0, 5.0)}}}
    summary = bench.pooled(results, ["m"])["m"]
    # seed 0: mean |err| 3, signed -1, cpu 2; seed 1: 2, -2, 5
    assert summary["mean_abs_if_error_pp"] == {
        "mean": pytest.approx(2.5),
        "sd": pytest.approx(math.sqrt(0.5)),
    }
    assert summary["mean_if_error_pp"]["mean"] == pytest.approx(-1.5)
    assert summary["train_cpu_s"]["mean"] == pytest.approx(3.5)
    assert summary["interstitium"] == {"mean": pytest.approx(12 / 14), "sd": 0.0}


@pytest.mark.slow  # ~40 s on the loaded 2-core machine (12 s CPU)
@pytest.mark.skipif(not FLASH.exists(), reason=f"FLASH tiles not found at {FLASH} (../shared/data)")
def test_quick_run_prints_every_model_with_finite_numbers(bench, capsys, tmp_path):
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--quick", "--out", str(tmp_path / "out.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    models = ["base", "finetuned 3 %", "dense half"]
    tile_rows = [line for line in out.splitlines() if line.startswith("| iri |")]
    pooled_rows = [line for line in out.splitlines() if line.startswith("| **pooled** |")]
    assert [r.split("|")[2].strip() for r in tile_rows] == models
    assert [r.split("|")[2].strip() for r in pooled_rows] == models
    assert "target: 3 % scribbles halve" in out
    data = json.loads((tmp_path / "out.json").read_text())
    per_model = data["per_seed"]["0"]["iri"]
    assert list(per_model) == models
    for name, result in per_model.items():
        assert math.isfinite(result["if_error_pp"]) and math.isfinite(result["train_cpu_s"]), name
        assert np.array(result["confusion"]).sum() > 100_000  # the 516 x 258 evaluation half, labelled pixels
    assert 0.02 <= per_model["finetuned 3 %"]["drawn_fraction"] <= 0.033  # simulator: never above 1.1 x
    for name, stats in data["pooled"].items():
        for key, value in stats.items():
            if key != "glomeruli":  # iri has no glomeruli: NaN Dice is the right answer there
                assert math.isfinite(value["mean"]), (name, key)


def test_combine_keeps_only_models_run_on_every_tile(bench, capsys, tmp_path):
    """Runs with other --fractions combine: a model missing on one tile is left out (named), never
    pooled over a smaller tile set; ``--tiles`` keeps a subset where it was run."""
    n = len(bench.CLASSES)
    conf = np.eye(n, dtype=np.int64).tolist()

    def row(err: float) -> dict:
        return {"confusion": conf, "if_error_pp": err, "train_cpu_s": 1.0}

    first = {"per_seed": {"0": {"a": {"base": row(4.0), "finetuned 3 %": row(1.0)}}}}
    second = {
        "per_seed": {"0": {"b": {"base": row(-8.0), "finetuned 1 %": row(2.0), "finetuned 3 %": row(-3.0)}}}
    }
    paths = []
    for name, payload in (("a.json", first), ("b.json", second)):
        (tmp_path / name).write_text(json.dumps(payload))
        paths.append(str(tmp_path / name))
    assert bench.combine(paths) == 0
    out = capsys.readouterr().out
    assert "left out (not run on every tile): finetuned 1 %" in out
    pooled = {r.split("|")[2].strip(): r for r in out.splitlines() if r.startswith("| **pooled** |")}
    assert list(pooled) == ["base", "finetuned 3 %"]
    assert "\\|err\\| 6.0 ± 0.0 (signed -2.0)" in pooled["base"]  # mean of |4| and |-8|
    assert "target: 3 % scribbles halve the base's mean |IF error|: 2.0 <= 3.0 pp -> PASS" in out
    assert bench.combine(paths, ["b"]) == 0
    pooled = [
        r.split("|")[2].strip()
        for r in capsys.readouterr().out.splitlines()
        if r.startswith("| **pooled** |")
    ]
    assert pooled == ["base", "finetuned 1 %", "finetuned 3 %"]


def test_split_auto_takes_the_first_half_holding_every_class(bench):
    ref = np.full((516, 516), 255, dtype=np.int64)
    r0, r1, c0, c1 = bench.half_box("right")
    ref[:] = 1  # interstitium everywhere
    ref[r0:r1, c0:c1][:10, :10] = 2  # tubules only in the right half
    assert bench.half_with_every_class(ref) == "right"
    ref[-5:, :5] = 2  # and in the bottom-left corner: the left half now holds both classes
    assert bench.half_with_every_class(ref) == "left"
    ref[ref == 2] = 1
    assert bench.half_with_every_class(ref) == "left"  # one class: any half holds it
    if FLASH.exists():  # the FLASH tiles: healthy (glomeruli) and ntn (tubules) lack a class on the left
        sides = {t: bench.half_with_every_class(bench.reference(t)) for t in bench.NAMES}
        assert sides == {t: "right" if t in ("healthy", "ntn") else "left" for t in bench.NAMES}
