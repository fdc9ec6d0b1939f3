"""Counting-point files: CSV and QuPath GeoJSON, classified or not, round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from histoseg.errors import LabelError
from histoseg.labels.counted_points import MARKER, UNCLASSIFIED, read_counted_points, write_counted_points

CLASSES = ["background", "interstitium", "tubules"]


@pytest.mark.parametrize("suffix", ["csv", "geojson"])
def test_written_points_read_back_unclassified_with_their_names(tmp_path, suffix):
    x, y = np.array([1.25, 7.5, 3.0]), np.array([2.0, 0.5, 9.75])
    path = write_counted_points(tmp_path / f"s.points.{suffix}", ["p0001", "p0002", "p0003"], x, y, CLASSES)
    points = read_counted_points(path, CLASSES)
    assert points.names == ["p0001", "p0002", "p0003"]
    np.testing.assert_array_equal(points.x, x)
    np.testing.assert_array_equal(points.y, y)
    assert (points.label == UNCLASSIFIED).all()


def test_a_qupath_export_with_classes_reads_its_classes(tmp_path):
    path = write_counted_points(tmp_path / "s.points.geojson", ["p0001", "p0002"], np.array([1.0, 2.0]),
                                np.array([1.0, 2.0]), CLASSES)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["features"][0]["properties"]["histoseg"]["written_by"] == MARKER
    assert data["features"][0]["properties"]["isLocked"] is True
    data["features"][0]["properties"]["classification"] = {"name": "Tubules", "color": [1, 2, 3]}
    path.write_text(json.dumps(data), encoding="utf-8")
    assert read_counted_points(path, CLASSES).label.tolist() == [2, UNCLASSIFIED]


def test_a_csv_class_the_model_does_not_know_is_one_error(tmp_path):
    path = tmp_path / "s.points.csv"
    path.write_text("id,x,y,class\np0001,1,1,tubules\np0002,2,2,cortex\n", encoding="utf-8")
    with pytest.raises(LabelError, match="cortex"):
        read_counted_points(path, CLASSES)
    path.write_text("id,x,y,class\np0001,nan,1,tubules\n", encoding="utf-8")
    with pytest.raises(LabelError, match="non-finite"):
        read_counted_points(path, CLASSES)
