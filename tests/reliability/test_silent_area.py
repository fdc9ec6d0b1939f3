"""Class 5 of issue 15: no silent wrong area. A diverged model (NaN logits), a map where tissue was found
but every pixel predicted glass, and a blank slide get their own status and a warning line; a NaN loss
stops training with one line naming the step."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, make_labelled_slide, write_tiff_pyramid
from tests.reliability.helpers import expect_one_error, library_logs_follow_capture, run, tiny_checkpoint  # noqa: F401

TINY = str(ROOT / "tests" / "conf" / "tiny.yaml")


def quantify_one(capsys, tmp_path, slide, **ckpt):
    ckpt_path = tiny_checkpoint(tmp_path / "m.ckpt", **ckpt)
    out = tmp_path / "out"
    status, lines, err = run(
        capsys, "quantify", "--ckpt_path", ckpt_path, "--slides", slide, "--out", out, "--no_progress"
    )
    result = json.loads((out / "report.json").read_text())["slides"][0]
    with open(out / "report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return status, lines, err, result, rows


@pytest.mark.parametrize(
    ("ckpt", "status_name", "needle"),
    [
        ({"nan": True}, "nonfinite_logits", "NaN or infinite logits in 1 of 1 tiles"),
        ({"favour": 0}, "all_glass", "predicted background (glass) everywhere"),
    ],
)
def test_no_silent_area_from_a_broken_model(capsys, tmp_path, ckpt, status_name, needle):
    slide, _, _ = make_labelled_slide(tmp_path, "s", seed=0, size=(320, 256))
    status, lines, err, result, rows = quantify_one(capsys, tmp_path, slide, **ckpt)
    assert status == 1 and "Traceback" not in err and not lines
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and needle in warnings[0]
    assert result["status"] == status_name and needle in result["error"]
    assert result["interstitial_fraction"] is None and result.get("rows") == []
    assert [r["status"] for r in rows] == [status_name]
    assert all(not r.get("area_mm2") for r in rows)


def test_no_silent_area_blank_slide(capsys, tmp_path):
    write_tiff_pyramid(tmp_path / "blank.tif", np.full((256, 320, 3), 250, np.uint8), mpp=0.5)
    status, lines, err, result, rows = quantify_one(capsys, tmp_path, tmp_path / "blank.tif")
    assert status == 1 and result["status"] == "no_tissue" and "no tissue found" in result["error"]
    assert sum(ln.startswith("warning: ") for ln in err.splitlines()) == 1


def test_no_silent_area_valid_prediction_is_ok(capsys, tmp_path):
    slide, _, _ = make_labelled_slide(tmp_path, "s", seed=0)
    status, lines, err, result, rows = quantify_one(capsys, tmp_path, slide, favour=1)
    assert status == 0 and result["status"] == "ok" and result["interstitial_fraction"] == 1.0


def test_no_silent_area_nan_loss_stops_training(capsys, tmp_path, monkeypatch):
    from histoseg.tasks import SegmentationTask

    make_labelled_slide(tmp_path, "s", seed=0)
    (tmp_path / "slides.csv").write_text("slide,labels,split\ns.tif,s.png,train\ns.tif,s.png,val\n")
    monkeypatch.setattr(
        SegmentationTask, "compute_loss", lambda self, logits, batch: logits.sum() * torch.nan
    )
    expect_one_error(
        capsys,
        ["training step 0 (epoch 0, batch 0): the loss is nan", "training diverged", "lower model.lr"],
        "fit",
        "--config",
        TINY,
        "--data.init_args.slides",
        tmp_path / "slides.csv",
        "--trainer.default_root_dir",
        tmp_path / "run",
    )
    assert not list(tmp_path.rglob("*.ckpt"))
