"""inference/health.py: the sanity checks that keep a broken model or slide from giving valid-looking areas.

Issue 28: class 4, degenerate input: tissue no stain makes (all black, one flat colour) is
``implausible_tissue``, never a result; a glob never takes histoseg's own outputs from an earlier ``--out``;
class 7, warning statuses: a ``nonfinite_logits``, ``no_tissue``, ``all_glass`` or ``implausible_tissue``
slide keeps no label map, GeoJSON or overlay that could pass for a result.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from histoseg.inference.health import (
    FLAT_STD,
    MAX_UPSAMPLING,
    prediction_problem,
    slide_problem,
    tissue_problem,
)
from histoseg.outputs import output_paths
from tests.conftest import make_labelled_slide, write_tiff_pyramid
from tests.reliability.helpers import run, tiny_checkpoint


@pytest.mark.parametrize(
    ("counts", "status"),
    [((10, 1, 5, 5), "nonfinite_logits"), ((10, 0, 5, 0), "no_tissue"), ((0, 0, 0, 5), "no_tissue"),
     ((10, 0, 0, 5), "all_glass"), ((10, 0, 5, 5), None)],
)  # fmt: skip
def test_prediction_problem_known_answers(counts, status):
    problem = prediction_problem(*counts)
    assert (problem and problem[0]) == status
    if status == "nonfinite_logits":
        assert "in 1 of 10 tiles" in problem[1] and "lower model.lr" in problem[1]


def test_slide_problem_names_the_resolution_and_the_fix():
    def slide(mpp):
        return SimpleNamespace(mpp=mpp, mpp_source="TIFF tags")

    assert slide_problem(slide(0.5), 0.5) is None
    assert slide_problem(slide(MAX_UPSAMPLING * 0.5), 0.5) is None  # exactly the limit is allowed
    coarse = slide_problem(slide(8.5), 1.0)
    assert coarse.startswith("resolution 8.5 microns per pixel (TIFF tags) is 8x coarser than the model's 1")
    outside = slide_problem(slide(0.01), 0.5)
    assert "is outside 0.05-100" in outside and outside.endswith("(or mpp: in the slide table)")


def quantify(capsys, tmp_path: Path, slides: object, out: Path, **ckpt) -> tuple[int, str, dict]:
    ckpt_path = tiny_checkpoint(tmp_path / "m.ckpt", **ckpt)
    status, _, err = run(capsys, "quantify", "--ckpt_path", ckpt_path, "--slides", slides, "--out", out, "--no_progress")
    report = json.loads((out / "report.json").read_text())
    return status, err, report


def test_tissue_problem_known_answers():
    tissue = np.ones((32, 32), bool)
    black = np.zeros((32, 32, 3), np.uint8)
    assert tissue_problem(black, tissue)[0] == "implausible_tissue"
    assert "black" in tissue_problem(black, tissue)[1]
    flat = np.full((32, 32, 3), (200, 90, 160), np.uint8)
    flat[::2] += 3  # scanner noise: a standard deviation of 1.5 grey levels
    assert "one flat colour (RGB" in tissue_problem(flat, tissue)[1]
    stained = np.random.default_rng(1).normal((200, 110, 170), 2 * FLAT_STD, (32, 32, 3)).clip(0, 255).astype(np.uint8)
    assert tissue_problem(stained, tissue) is None
    assert tissue_problem(black, np.zeros((32, 32), bool)) is None  # no tissue: another status


@pytest.mark.parametrize(
    ("pixel", "needle"),
    [((0, 0, 0), "of the tissue found is black"), ((200, 60, 150), "one flat colour")],
)
def test_degenerate_input_is_implausible_tissue_not_a_result(capsys, tmp_path, pixel, needle):
    """Class 4: an all-black 1024 x 1024 slide was status ok with 99.8 % glomeruli."""
    write_tiff_pyramid(tmp_path / "flat.tif", np.full((1024, 1024, 3), pixel, np.uint8), mpp=0.5)
    status, err, report = quantify(capsys, tmp_path, tmp_path / "flat.tif", tmp_path / "out", favour=3)
    result = report["slides"][0]
    assert status == 1 and "Traceback" not in err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and needle in warnings[0] and "implausible" not in warnings[0].split(":")[0]
    assert result["status"] == "implausible_tissue" and needle in result["error"]
    assert result["rows"] == [] and result["interstitial_fraction"] is None
    with open(tmp_path / "out" / "report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["status"] for r in rows} == {"implausible_tissue"} and not any(r.get("area_mm2") for r in rows)


@pytest.mark.parametrize(
    ("make", "ckpt", "status_name"),
    [
        ("tissue", {"nan": True}, "nonfinite_logits"),
        ("tissue", {"favour": 0}, "all_glass"),
        ("blank", {}, "no_tissue"),
        ("black", {}, "implausible_tissue"),
    ],
)
def test_warning_statuses_keep_no_outputs_that_look_like_results(capsys, tmp_path, make, ckpt, status_name):
    """Class 7: a warning-status slide kept a label map, GeoJSON and overlay that looked like results."""
    slides = tmp_path / "slides"
    slides.mkdir()
    make_labelled_slide(tmp_path, "good", seed=0)
    shutil.move(tmp_path / "good.tif", slides / "good.tif")
    if make == "tissue":
        make_labelled_slide(slides, "bad", seed=1)
        (slides / "bad.png").unlink()
    else:
        value = 250 if make == "blank" else 0
        write_tiff_pyramid(slides / "bad.tif", np.full((256, 320, 3), value, np.uint8), mpp=0.5)
    out = tmp_path / "out"
    status, err, report = quantify(capsys, tmp_path, slides, out, **ckpt)
    by_slide = {r["slide"]: r for r in report["slides"]}
    assert by_slide["bad.tif"]["status"] == status_name, err
    assert by_slide["bad.tif"]["outputs"] == {}
    left = [p.name for p in output_paths(out, by_slide["bad.tif"]["stem"]).values() if p.exists()]
    assert left == []
    assert (out / f".{by_slide['bad.tif']['stem']}.result.json").is_file()  # the status is kept
    if by_slide["good.tif"]["status"] == "ok":  # the model of this case predicts on good slides
        assert all(p.is_file() for p in output_paths(out, by_slide["good.tif"]["stem"]).values())


def test_degenerate_input_a_glob_never_takes_outputs_of_an_earlier_out(capsys, tmp_path):
    """Class 4: --slides 'slides/**/*.tif' --out slides/out2 quantified out1's label maps as slides."""
    slides = tmp_path / "slides"
    slides.mkdir()
    for i in range(2):
        make_labelled_slide(slides, f"s{i}", seed=i)
        (slides / f"s{i}.png").unlink()
    ckpt = tiny_checkpoint(tmp_path / "m.ckpt")
    first, _, err = run(capsys, "quantify", "--ckpt_path", ckpt, "--slides", slides, "--out", slides / "out1", "--no_progress")
    assert first == 0, err
    assert (slides / "out1" / "s0.labels.tif").is_file()
    (slides / "sub").mkdir()
    user = slides / "sub" / "mine.labels.tif"  # a user's slide merely named like an output: still a slide
    shutil.copy(slides / "s1.tif", user)
    pattern = str(slides / "**" / "*.tif")
    status, _, err = run(capsys, "quantify", "--ckpt_path", ckpt, "--slides", pattern, "--out", slides / "out2", "--no_progress")
    assert status == 0, err
    names = sorted(r["path"] for r in json.loads((slides / "out2" / "report.json").read_text())["slides"])
    assert names == sorted([str(slides / "s0.tif"), str(slides / "s1.tif"), str(user)])
