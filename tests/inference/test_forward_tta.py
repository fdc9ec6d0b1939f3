"""Test-time augmentation: 8 dihedral views averaged; per-view spread; known answers on tiny slides."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from torch import nn

from histoseg.inference.options import InferenceOptions
from histoseg.inference.predict import predict_slide
from histoseg.inference.predictor import Predictor
from histoseg.quantify import run_quantify
from histoseg.report.areas import interstitial_fraction
from tests.inference.test_predict import CLASSES, make_truth, write_slide


class Pointwise(nn.Module):
    """A seeded random 1x1 convolution: equivariant under every rotation and mirror."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x * 8.0 - 4.0) * 4.0


class RightNeighbour(nn.Module):
    """Not equivariant: interstitium logit from the red value of the pixel to the right (0 past the edge).

    Logits: interstitium ``10 (r(i, j + 1) - 0.5)``, tubules 0.1, the other classes -100.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right = F.pad(x[:, 0], (0, 1))[:, :, 1:]
        logits = torch.full((x.shape[0], 5, *x.shape[-2:]), -100.0)
        logits[:, 1] = 10.0 * (right - 0.5)
        logits[:, 2] = 0.1
        return logits


def predictor(model: nn.Module, tile: int) -> Predictor:
    return Predictor(model, list(CLASSES), mpp=1.0, tile_size=tile, margin=0, size_multiple=1)


@pytest.mark.parametrize("blend", ["gaussian", "crop"])
def test_equivariant_model_all_views_agree_with_plain(tmp_path: Path, blend: str) -> None:
    truth = make_truth(150, 170)
    slide = write_slide(tmp_path / "s.tif", truth)
    model = predictor(Pointwise(), 64)
    base = InferenceOptions(blend=blend, precision="32", skip_glass=False)  # type: ignore[arg-type]
    plain = predict_slide(slide, model, base, progress=False)
    tta = predict_slide(slide, model, base.replace(tta=True), progress=False)
    assert len(np.unique(np.asarray(plain.labels))) >= 3
    np.testing.assert_array_equal(np.asarray(tta.labels), np.asarray(plain.labels))
    assert tta.view_counts is not None and tta.view_counts.shape == (8, 5)
    for view in tta.view_counts:
        np.testing.assert_array_equal(view, plain.counts)
    fractions = {interstitial_fraction(v, CLASSES) for v in tta.view_counts}
    assert fractions == {interstitial_fraction(plain.counts, CLASSES)}
    np.testing.assert_allclose(tta.expected_counts, plain.expected_counts, rtol=1e-4)


def stripe_slide(path: Path) -> tuple[Path, np.ndarray]:
    """16 x 16 black slide with a red stripe in columns 4-7."""
    red = np.zeros((16, 16), np.float64)
    red[:, 4:8] = 1.0
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = (red * 255).astype(np.uint8)
    tifffile.imwrite(path, rgb, photometric="rgb", resolution=(1e4, 1e4), resolutionunit="CENTIMETER")
    return path, red


def hand_tta(red: np.ndarray) -> np.ndarray:
    """(5, H, W) mean softmax of RightNeighbour over the 8 views, by hand.

    Each view's "right neighbour", turned back to the slide, is one of right, left, up, down (the
    8 symmetries of the square map the direction to each of the 4 twice), so the mean over the 8
    views is the mean over these 4 directions; outside the tile the red value is 0.
    """
    padded = np.pad(red, 1)
    neighbours = [padded[1:-1, 2:], padded[1:-1, :-2], padded[:-2, 1:-1], padded[2:, 1:-1]]
    probs = np.zeros((5, *red.shape))
    for r in neighbours:
        logits = np.stack(
            [np.full_like(r, -100.0), 10 * (r - 0.5), np.full_like(r, 0.1)] + [np.full_like(r, -100.0)] * 2
        )
        e = np.exp(logits - logits.max(0))
        probs += e / e.sum(0) / 4
    return probs


@pytest.mark.parametrize("blend", ["gaussian", "crop"])
def test_non_equivariant_model_spread_and_hand_computed_average(tmp_path: Path, blend: str) -> None:
    slide, red = stripe_slide(tmp_path / "s.tif")
    options = InferenceOptions(blend=blend, tta=True, precision="32", skip_glass=False)  # type: ignore[arg-type]
    result = predict_slide(slide, predictor(RightNeighbour(), 16), options, progress=False)
    probs = hand_tta(red)
    expected_labels = probs.argmax(0)
    # Interstitium where >= 3 of the 4 neighbours are red: columns 5-6 (16 rows) and columns 4 and 7
    # except their first and last rows (14 rows each): 60 px.
    assert (expected_labels == 1).sum() == 32 + 28
    np.testing.assert_array_equal(np.asarray(result.labels), expected_labels)
    np.testing.assert_allclose(result.expected_counts, probs.reshape(5, -1).sum(1), rtol=1e-5, atol=1e-3)
    # Each view alone: right/left neighbours -> columns 3-6 / 5-8 (64 px); up/down -> 15 rows x 4 (60 px).
    assert result.view_counts is not None
    views = sorted(int(c[1]) for c in result.view_counts)
    assert views == [60, 60, 60, 60, 64, 64, 64, 64]
    assert int(result.view_counts[0][1]) == 64  # view 0 is the tile as read: the right neighbour
    fractions = [interstitial_fraction(c, CLASSES) for c in result.view_counts]
    assert min(fractions) == pytest.approx(60 / 256) and max(fractions) == pytest.approx(64 / 256)


def test_quantify_tta_writes_the_spread_columns(tmp_path: Path) -> None:
    slide, red = stripe_slide(tmp_path / "s.tif")
    options = InferenceOptions(blend="crop", tta=True, precision="32", skip_glass=False)
    assert (
        run_quantify(predictor(RightNeighbour(), 16), [slide], tmp_path / "out", options, progress=False) == 0
    )
    rows = list(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    probs = hand_tta(red)
    expected_fraction = probs[1].sum() / probs[1:4].sum()
    for row in rows:
        assert float(row["tta_fraction_min"]) == pytest.approx(60 / 256)
        assert float(row["tta_fraction_max"]) == pytest.approx(64 / 256)
        assert float(row["expected_interstitial_fraction"]) == pytest.approx(expected_fraction, rel=1e-5)
        assert row["precision"] == "32"
    # Without --tta the spread columns are empty and the expected-area fraction is still given.
    plain = options.replace(tta=False)
    assert (
        run_quantify(predictor(RightNeighbour(), 16), [slide], tmp_path / "plain", plain, progress=False) == 0
    )
    rows = list(csv.DictReader(open(tmp_path / "plain" / "report.csv")))
    assert all(r["tta_fraction_min"] == "" and r["expected_interstitial_fraction"] != "" for r in rows)
