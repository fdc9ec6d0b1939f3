"""labels/scribbles.py: scribbles as their labelled pixels alone (no whole-slide array)."""

from __future__ import annotations

import numpy as np

from histoseg.labels.scribbles import (
    read_scribbles_geojson,
    read_scribbles_geojson_sparse,
    write_scribbles_geojson,
)

CLASSES = ("bg", "int", "tubules", "glom")


def test_sparse_pixels_equal_the_mask_with_the_last_feature_winning(tmp_path):
    path = tmp_path / "s.geojson"
    strokes = [
        (2, np.array([[2.0, 5.0], [30.0, 5.0]])),
        (1, np.array([[10.0, 1.0], [10.0, 20.0]])),  # crosses the first: drawn later, wins
        (3, np.array([[25.0, 18.0]])),  # a dot
        (2, np.array([[10.0, 3.0], [12.0, 3.0]])),  # over the second again
    ]
    write_scribbles_geojson(strokes, path, CLASSES)
    mask, _ = read_scribbles_geojson(path, CLASSES, shape=(24, 36), scale=1.0, brush_px=3)
    flat, values, warnings = read_scribbles_geojson_sparse(
        path, CLASSES, shape=(24, 36), scale=1.0, brush_px=3
    )
    assert warnings == [] and np.all(np.diff(flat) > 0)
    assert np.array_equal(flat, np.flatnonzero(mask != 255)) and np.array_equal(values, mask.ravel()[flat])
    assert mask[5, 10] == 1 and mask[3, 10] == 2 and set(np.unique(values)) == {1, 2, 3}


def test_sparse_pixels_of_a_stroke_on_a_whole_slide_grid_need_no_slide_sized_array(tmp_path):
    """A 200,000 x 150,000 px grid (30 G pixels): the whole-grid mask could not be allocated here."""
    path = tmp_path / "s.geojson"
    write_scribbles_geojson([(1, np.array([[100_000.5, 70_000.5], [100_004.5, 70_000.5]]))], path, CLASSES)
    flat, values, _ = read_scribbles_geojson_sparse(
        path, CLASSES, shape=(150_000, 200_000), scale=1.0, brush_px=1
    )
    rows, cols = np.divmod(flat, 200_000)
    assert rows.tolist() == [70_000] * 5 and cols.tolist() == list(range(100_000, 100_005))
    assert values.tolist() == [1] * 5
