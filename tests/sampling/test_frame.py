"""Counting frames: cell areas, strata weights, lookup, the record, and frames from label maps."""

from __future__ import annotations

import numpy as np
import pytest

from histoseg.errors import LabelError
from histoseg.sampling.frame import OUTSIDE, CountingFrame, frame_from_label_map

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]


def test_edge_cells_count_only_their_part_inside_the_slide():
    # 2 x 2 cells of 10 x 10 px over a 15 x 15 px slide: areas 100, 50, 50, 25.
    frame = CountingFrame(np.array([[0, 0], [1, OUTSIDE]], np.uint8), (10, 10), (15, 15), ("a", "b"))
    assert frame.cell_areas().tolist() == [[100.0, 50.0], [50.0, 25.0]]
    assert frame.stratum_areas().tolist() == [150.0, 50.0]
    assert frame.area() == 200.0
    assert frame.weights().tolist() == [0.75, 0.25]


def test_locate_gives_the_stratum_of_the_cell_under_a_point_and_255_off_the_frame():
    frame = CountingFrame(np.array([[0, 1], [OUTSIDE, 1]], np.uint8), (10, 10), (20, 20), ("a", "b"))
    x = np.array([0.0, 9.99, 10.0, 5.0, 19.5, -1.0, 20.0, np.nan])
    y = np.array([0.0, 9.99, 0.0, 15.0, 19.5, 0.0, 5.0, 1.0])
    assert frame.locate(x, y).tolist() == [0, 0, 1, OUTSIDE, 1, OUTSIDE, OUTSIDE, OUTSIDE]


def test_the_record_round_trips_and_a_changed_cell_is_refused():
    frame = CountingFrame(np.arange(12, dtype=np.uint8).reshape(3, 4) % 3, (2.5, 4.0), (10, 12), ("a", "b", "c"))
    data = frame.to_dict()
    again = CountingFrame.from_dict(data, "x.design.json")
    assert again.fingerprint() == frame.fingerprint()
    assert np.array_equal(again.cells, frame.cells) and again.cell_size == (2.5, 4.0)
    data["strata"] = ["a", "b", "d"]
    with pytest.raises(LabelError, match="checksum"):
        CountingFrame.from_dict(data, "x.design.json")
    with pytest.raises(LabelError, match="unreadable"):
        CountingFrame.from_dict({"shape": [3, 4]}, "x.design.json")


def test_frame_is_the_tissue_grown_by_the_margin_with_glass_strata():
    labels = np.zeros((9, 9), np.uint8)  # glass
    labels[4, 4] = 2  # one tubule pixel in the middle
    frame = frame_from_label_map(labels, (1.0, 1.0), (9, 9), CLASSES, 0, strata="none", margin_cells=2)
    inside = frame.cells != OUTSIDE
    yy, xx = np.mgrid[:9, :9]
    assert np.array_equal(inside, (yy - 4) ** 2 + (xx - 4) ** 2 <= 4)
    assert frame.strata == ("frame",)
    by_class = frame_from_label_map(labels, (1.0, 1.0), (9, 9), CLASSES, 0, strata="class", margin_cells=2, min_share=0)
    assert by_class.strata == ("background", "tubules")
    assert np.isclose(by_class.weights()[1], 1 / 13)


def test_class_and_edge_strata_and_small_strata_merged():
    labels = np.ones((10, 10), np.uint8)  # interstitium
    labels[:, 5:] = 2  # tubules on the right half
    labels[0, 0] = 3  # one glomerulus pixel: 1 % of the frame, merged into the largest stratum
    frame = frame_from_label_map(labels, (1.0, 1.0), (10, 10), CLASSES, 0, strata="class+edge", min_share=0.02)
    assert frame.strata == (
        "interstitium inside",
        "interstitium edge",
        "tubules inside + glomeruli edge",
        "tubules edge",
    )
    assert frame.weights().tolist() == pytest.approx([0.37, 0.12, 0.41, 0.10])
    assert (frame.cells[:, 4] == 1).all() and (frame.cells[:, 5] == 3).all()  # both sides of the boundary
    assert frame.cells[0, 0] == 2 and frame.cells[0, 1] == 1 and frame.cells[1, 0] == 1


def test_a_label_map_without_tissue_is_refused():
    with pytest.raises(LabelError, match="no tissue"):
        frame_from_label_map(np.zeros((4, 4), np.uint8), (1.0, 1.0), (4, 4), CLASSES, 0)
