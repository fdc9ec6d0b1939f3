"""labels/simulate.py: simulated scribbles and grid points from a label mask, known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histoseg.errors import ConfigError, HistosegError
from histoseg.labels.points import (
    rasterize_points,
)
from histoseg.labels.simulate import grid_points_from_mask, simulate_scribbles
from histoseg.labels.strokes import rasterize_strokes
from tests.labels.test_scribbles import _synthetic_mask

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _check_simulation(mask, strokes, fraction, brush, *, thin_classes=()):
    raster = rasterize_strokes(strokes, mask.shape, brush)
    labelled = int((mask != 255).sum())
    got = int((raster != 255).sum())
    assert abs(got / (fraction * labelled) - 1) <= 0.10, got / (fraction * labelled)
    assert got <= 1.1 * fraction * labelled
    present = set(np.unique(mask[mask != 255]).tolist())
    assert {s.class_index for s in strokes} == present
    wrong = (raster != 255) & (raster != mask)
    # Only classes thinner than the brush may spill, by at most one dot.
    assert set(np.unique(raster[wrong]).tolist()) <= set(thin_classes)
    assert wrong.sum() <= len(thin_classes) * brush * brush
    assert (raster[mask == 255] == 255).all() or thin_classes
    return got


@pytest.mark.parametrize("method", ["skeleton", "random_walk", "contour"])
@pytest.mark.parametrize("fraction,brush", [(0.03, 3), (0.01, 3), (0.1, 5)])
def test_simulate_scribbles_fraction_classes_and_purity(method, fraction, brush):
    mask = _synthetic_mask()
    strokes = simulate_scribbles(mask, fraction=fraction, brush_px=brush, seed=0, method=method)
    _check_simulation(mask, strokes, fraction, brush, thin_classes=(4,))
    again = simulate_scribbles(mask, fraction=fraction, brush_px=brush, seed=0, method=method)
    assert len(again) == len(strokes) and all(
        a.class_index == b.class_index and np.array_equal(a.xy, b.xy)
        for a, b in zip(again, strokes, strict=True)
    )
    for stroke in strokes:
        assert stroke.xy.dtype == np.float64 and stroke.xy.shape[1] == 2
        assert np.array_equal(stroke.xy % 1, np.full_like(stroke.xy, 0.5))  # pixel centres
        assert len(stroke.xy) <= 40 * brush


def test_simulate_scribbles_fallback_dot_and_errors():
    mask = np.full((50, 50), 1, np.uint8)
    mask[25, 5:45] = 2  # only a one-pixel line: gets a single dot at its widest point
    strokes = simulate_scribbles(mask, fraction=0.05, brush_px=3)
    thin = [s for s in strokes if s.class_index == 2]
    assert len(thin) == 1 and len(thin[0].xy) == 1 and thin[0].xy[0, 1] == 25.5
    with pytest.raises(ConfigError, match="too small for one 3-px dot per class"):
        simulate_scribbles(mask, fraction=0.002, brush_px=3)
    with pytest.raises(ConfigError):
        simulate_scribbles(mask, fraction=0.0)
    with pytest.raises(ConfigError):
        simulate_scribbles(mask, method="zigzag")  # type: ignore[arg-type]
    assert simulate_scribbles(np.full((5, 5), 255, np.uint8)) == []


def test_simulate_scribbles_ignore_values():
    mask = np.full((60, 60), 1, np.uint8)
    mask[:, 30:] = 0
    strokes = simulate_scribbles(mask, fraction=0.05, brush_px=3, ignore=(0, 255))
    raster = rasterize_strokes(strokes, mask.shape, 3)
    assert {s.class_index for s in strokes} == {1}
    assert (raster[:, 30:] == 255).all()
    assert abs((raster != 255).sum() / (0.05 * 1800) - 1) <= 0.1


@pytest.mark.skipif(not (SHARED / "flash-mouse-pas" / "labels").is_dir(), reason="../shared/data is absent")
def test_simulate_scribbles_on_real_kidney_labels():
    # Bouteldja et al., JASN 2021 (AGPL-3.0 example data, read in place).
    raw = np.asarray(Image.open(SHARED / "flash-mouse-pas" / "labels" / "healthy_01-labels.png"))
    lut = np.full(256, 255, np.uint8)
    lut[[0, 1, 2, 3, 4, 5, 6]] = [1, 2, 3, 3, 4, 4, 4]  # 7 = tubule border: unlabelled here
    mask = lut[raw]
    for method in ("skeleton", "random_walk", "contour"):
        strokes = simulate_scribbles(mask, fraction=0.03, brush_px=5, method=method)
        _check_simulation(mask, strokes, 0.03, 5)


def test_contour_strokes_trace_a_disk_at_half_its_radius():
    """A disk of radius 40: contour strokes run 20 px deep; skeleton strokes start at its centre."""
    yy, xx = np.mgrid[:120, :120]
    mask = np.where((yy - 60) ** 2 + (xx - 60) ** 2 <= 40**2, 1, 255).astype(np.uint8)
    depth = 40 - np.hypot(yy - 60, xx - 60)  # distance to the disk's edge
    strokes = simulate_scribbles(mask, fraction=0.05, brush_px=3, method="contour")
    _check_simulation(mask, strokes, 0.05, 3)
    xy = np.concatenate([s.xy for s in strokes])
    d = depth[(xy[:, 1] - 0.5).astype(int), (xy[:, 0] - 0.5).astype(int)]
    assert 18.5 <= d.min() and d.max() <= 21.5, (d.min(), d.max())  # within 1.5 px of the iso-line
    centre = simulate_scribbles(mask, fraction=0.05, brush_px=3, method="skeleton")
    assert min(float(np.hypot(*(s.xy - 60).T).min()) for s in centre) < 2  # the skeleton is the centre


def test_shorter_strokes_spread_the_budget_over_more_objects():
    mask = np.full((200, 200), 255, np.uint8)
    for r in range(10, 200, 40):
        for c in range(10, 200, 40):
            mask[r : r + 30, c : c + 30] = 1  # 25 squares of 30 x 30
    long = simulate_scribbles(mask, fraction=0.2, brush_px=3, stroke_length_brushes=40)
    short = simulate_scribbles(mask, fraction=0.2, brush_px=3, stroke_length_brushes=3)
    for strokes in (long, short):
        _check_simulation(mask, strokes, 0.2, 3)
    assert max(len(s.xy) for s in short) <= 9 < max(len(s.xy) for s in long)
    assert len(short) > len(long)
    with pytest.raises(ConfigError, match="at least 2"):
        simulate_scribbles(mask, stroke_length_brushes=1)


def test_grid_points_known_answer():
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 2
    mask[6:, :4] = 255
    pts = grid_points_from_mask(mask, spacing_px=4, scale=2.0)
    # Grid at mask (2, 6) x (2, 6); (row 6, col 2) is ignored.
    assert pts.x.tolist() == [4.0, 12.0, 12.0]
    assert pts.y.tolist() == [4.0, 4.0, 12.0]
    assert pts.label.tolist() == [0, 2, 2]
    off = grid_points_from_mask(mask, spacing_px=3, offset=0, ignore=())
    assert off.x.tolist()[:3] == [0.0, 3.0, 6.0] and len(off) == 9
    assert off.label.tolist() == [0, 0, 2, 0, 0, 2, 255, 255, 2]
    with pytest.raises(HistosegError):
        grid_points_from_mask(mask, spacing_px=0)


@pytest.mark.parametrize("scale", [1.0, 0.1, 0.37, 3.0, 4.0])
def test_grid_points_rasterize_back_to_their_pixels(scale):
    rng = np.random.default_rng(1)
    mask = rng.integers(0, 5, size=(40, 50)).astype(np.uint8)
    pts = grid_points_from_mask(mask, spacing_px=3.0, scale=scale)
    assert len(pts) == 13 * 17
    sparse = rasterize_points(pts, mask.shape, scale)
    hit = sparse != 255
    assert hit.sum() == len(pts)
    assert np.array_equal(sparse[hit], mask[hit])
