"""Known answers for class areas, the interstitial fraction and label-map TIFF reading."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from histoseg import KIDNEY_CLASSES
from histoseg.errors import HistosegError
from histoseg.report.areas import (
    INTERSTITIAL_FRACTION_DEFINITION,
    class_areas,
    class_colors,
    find_class,
    interstitial_fraction,
    label_colormap,
    label_map_counts,
    read_label_level,
)

CLASSES = list(KIDNEY_CLASSES)


def test_class_areas_known_answer() -> None:
    # background 100, interstitium 30, tubules 50, glomeruli 20, other 100 pixels at 0.5 um/px.
    rows = class_areas([100, 30, 50, 20, 100], 0.5, CLASSES, expected_counts=[90, 35, 45, 20, 110])
    assert [r["class"] for r in rows] == CLASSES
    assert [r["pixels"] for r in rows] == [100, 30, 50, 20, 100]
    assert [r["area_um2"] for r in rows] == [25.0, 7.5, 12.5, 5.0, 25.0]
    assert rows[2]["area_mm2"] == pytest.approx(12.5e-6)
    # tissue = 30 + 50 + 20 + 100 = 200 pixels
    assert math.isnan(rows[0]["fraction_of_tissue"])
    assert [r["fraction_of_tissue"] for r in rows[1:]] == [0.15, 0.25, 0.1, 0.5]
    # interstitial fraction = 30 / (30 + 50 + 20) on every row
    assert all(r["interstitial_fraction"] == pytest.approx(0.3) for r in rows)
    assert [r["expected_area_um2"] for r in rows] == [22.5, 8.75, 11.25, 5.0, 27.5]


def test_anisotropic_mpp_and_extra_bins() -> None:
    counts = np.zeros(256, np.int64)
    counts[:5] = [0, 10, 10, 0, 0]
    counts[255] = 999  # unlabelled: ignored
    rows = class_areas(counts, (0.5, 2.0), CLASSES)
    assert rows[1]["area_um2"] == 10.0
    assert rows[1]["interstitial_fraction"] == 0.5
    assert math.isnan(rows[1]["expected_area_um2"])


def test_undefined_fractions_are_nan() -> None:
    rows = class_areas([100, 0, 0, 0, 0], 1.0, CLASSES)
    assert all(math.isnan(r["fraction_of_tissue"]) for r in rows)
    assert all(math.isnan(r["interstitial_fraction"]) for r in rows)
    # a model without glomeruli: the biomarker is undefined, tissue fractions are not
    rows = class_areas([5, 5], 1.0, ["interstitium", "tubules"], background=None)
    assert [r["fraction_of_tissue"] for r in rows] == [0.5, 0.5]
    assert math.isnan(rows[0]["interstitial_fraction"])


def test_aliases_and_background_index() -> None:
    classes = ["glass", "Tubule", "Interstitial", "Glomerulus"]
    assert find_class(classes, "background") == 0
    assert find_class(classes, "tubules") == 1
    assert interstitial_fraction([7, 2, 6, 2], classes) == pytest.approx(0.6)
    rows = class_areas([7, 2, 6, 2], 1.0, classes, background=0)
    assert rows[1]["fraction_of_tissue"] == pytest.approx(0.2)
    assert "A_interstitium / (A_interstitium + A_tubules + A_glomeruli)" in INTERSTITIAL_FRACTION_DEFINITION


def test_bad_inputs_raise_user_errors() -> None:
    with pytest.raises(HistosegError, match="mpp"):
        class_areas([1, 2, 3, 4, 5], 0.0, CLASSES)
    with pytest.raises(HistosegError, match="counts"):
        class_areas([1, 2], 1.0, CLASSES)
    with pytest.raises(HistosegError, match="non-negative"):
        class_areas([1, -2, 3, 4, 5], 1.0, CLASSES)


def test_colours() -> None:
    colors = class_colors(CLASSES)
    assert colors.shape == (5, 3) and colors.dtype == np.uint8
    assert tuple(colors[0]) == (255, 255, 255)
    assert len({tuple(c) for c in colors}) == 5
    table = label_colormap(CLASSES)
    assert table.shape == (256, 3) and tuple(table[255]) == (0, 0, 0)


def test_label_map_counts_array_and_tiff(tmp_path: Path) -> None:
    from histoseg.io.tiff import write_pyramid_tiff

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(1100, 700)).astype(np.uint8)
    labels[:3, :3] = 255
    expected = np.bincount(labels.ravel(), minlength=256)
    np.testing.assert_array_equal(label_map_counts(labels, rows_per_block=100), expected)
    path = tmp_path / "l.tif"
    write_pyramid_tiff(
        path, labels, 2.0, compression="deflate", interpolation="nearest", colormap=label_colormap(CLASSES)
    )
    np.testing.assert_array_equal(label_map_counts(path, rows_per_block=300), expected)
    level, scale, size0 = read_label_level(path, max_pixels=400 * 400)
    assert size0 == (700, 1100)
    assert level.shape == (275, 175)  # level 2 (ceil halving twice): the finest with <= 160 000 px
    np.testing.assert_array_equal(level, labels[::4, ::4])
    assert scale == (4.0, 4.0)
    full, scale, _ = read_label_level(path)
    np.testing.assert_array_equal(full, labels)
    with pytest.raises(HistosegError):
        label_map_counts(tmp_path / "missing.tif")
