"""labels/strokes.py: strokes rasterised with known shapes, last stroke wins, long segments as short ones."""

from __future__ import annotations

import numpy as np
import pytest

from histoseg.errors import ConfigError
from histoseg.labels.strokes import Stroke, rasterize_strokes


def test_rasterize_strokes_known_shapes():
    dot = rasterize_strokes([Stroke(1, np.array([[4.5, 4.5]]))], (9, 9), brush_px=3)
    assert (dot == 1).sum() == 9 and (dot[3:6, 3:6] == 1).all()  # centres within 1.5 px: a 3x3 block
    dot5 = rasterize_strokes([(1, [[4.5, 4.5]])], (9, 9), brush_px=5)
    assert (dot5 == 1).sum() == 21  # d^2 <= 6.25: 5x5 minus the 4 corners
    line = rasterize_strokes([(2, [[1.5, 2.5], [5.5, 2.5]])], (5, 8), brush_px=3)
    assert (line == 2).sum() == 3 * 7 and (line[1:4, 0:7] == 2).all()
    diag = rasterize_strokes([(3, [[0.5, 0.5], [4.5, 4.5]])], (5, 5), brush_px=1)
    assert np.array_equal(diag == 3, np.eye(5, dtype=bool))
    # Sub-pixel brushes are drawn one pixel wide.
    assert np.array_equal(rasterize_strokes([(3, [[0.5, 0.5], [4.5, 4.5]])], (5, 5), brush_px=0.3), diag)
    with pytest.raises(ConfigError):
        rasterize_strokes([], (5, 5), brush_px=0)


def test_rasterize_strokes_last_wins_and_clipping():
    strokes = [Stroke(1, np.array([[0.5, 2.5], [9.5, 2.5]])), Stroke(2, np.array([[4.5, -3.0], [4.5, 20.0]]))]
    out = rasterize_strokes(strokes, (6, 10), brush_px=1)
    assert out[2, 4] == 2 and (out[2] == 1).sum() == 9 and (out[:, 4] == 2).all()
    swapped = rasterize_strokes(strokes[::-1], (6, 10), brush_px=1)
    assert swapped[2, 4] == 1


def test_long_segment_path_matches_short_segments():
    # One long diagonal segment (row-strip code path) equals the same line cut into short pieces
    # whenever the cut points are exact (multiples of 1/4 on this slope).
    shape = (300, 300)
    long = rasterize_strokes([(1, [[3.0, 5.0], [283.0, 285.0]])], shape, brush_px=7)
    pieces = np.stack([np.linspace(3.0, 283.0, 281), np.linspace(5.0, 285.0, 281)], axis=1)
    short = rasterize_strokes([(1, pieces)], shape, brush_px=7)
    assert np.array_equal(long, short)
    rows, cols = np.nonzero(long == 1)
    dist = np.abs((cols + 0.5) - (rows + 0.5) + 2.0) / np.sqrt(2)
    assert dist.max() <= 3.5 and long.sum() > 0
