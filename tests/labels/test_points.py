"""labels/points.py: points as their labelled pixels alone (no H x W owner array)."""

from __future__ import annotations

import numpy as np

from histoseg.labels.points import PointSet, point_pixels, rasterize_points


def test_point_pixels_equal_the_rasterised_discs_where_later_points_and_centres_win():
    rng = np.random.default_rng(0)
    points = PointSet(
        x=rng.uniform(0, 60, 40), y=rng.uniform(0, 50, 40), label=rng.integers(0, 4, 40).astype(np.uint8)
    )
    for radius in (0, 1, 3):
        mask = rasterize_points(points, (25, 30), scale=2.0, radius_px=radius)
        flat, values = point_pixels(points, (25, 30), scale=2.0, radius_px=radius)
        assert np.array_equal(flat, np.flatnonzero(mask != 255)), radius
        assert np.array_equal(values, mask.ravel()[flat]), radius


def test_point_pixels_on_a_whole_slide_grid_need_no_slide_sized_array():
    """A 100,000 x 100,000 grid: the int64 owner array of rasterize_points would be 80 GB."""
    points = PointSet(x=np.array([500.0, 501.0]), y=np.array([7.0, 7.0]), label=np.array([2, 3], np.uint8))
    flat, values = point_pixels(points, (100_000, 100_000), scale=1.0, radius_px=1)
    rows, cols = np.divmod(flat, 100_000)
    assert list(zip(rows.tolist(), cols.tolist(), values.tolist(), strict=True)) == [
        (6, 500, 2), (6, 501, 3), (7, 499, 2), (7, 500, 2), (7, 501, 3), (7, 502, 3), (8, 500, 2), (8, 501, 3),
    ]  # fmt: skip
