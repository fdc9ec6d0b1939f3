from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from histoseg import KIDNEY_CLASSES
from histoseg.errors import LabelError
from histoseg.labels.points import (
    PointSet,
    point_pixels,
    rasterize_points,
    read_points,
    write_points_csv,
)

CLASSES = KIDNEY_CLASSES


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _fc(features: list) -> str:
    return json.dumps({"type": "FeatureCollection", "features": features})


def _point(x, y, name, kind="Point"):
    coords = [x, y] if kind == "Point" else [[a, b] for a, b in zip(x, y, strict=True)]
    return {
        "type": "Feature",
        "geometry": {"type": kind, "coordinates": coords},
        "properties": {"objectType": "annotation", "classification": {"name": name, "color": [1, 2, 3]}},
    }


def test_pointset_types_and_len():
    pts = PointSet([1, 2], [3, 4], [0, 4])
    assert len(pts) == 2
    assert pts.x.dtype == np.float64 and pts.y.dtype == np.float64 and pts.label.dtype == np.uint8
    with pytest.raises(ValueError):
        PointSet([1], [2, 3], [0])


def test_read_csv_names_indices_case_and_extra_columns(tmp_path):
    f = _write(tmp_path / "p.csv", "id,class,y,x\n7,tubules,20.5,10\n8,Glomeruli,1,2\n9,1,3.25,4\n\n")
    pts = read_points(f, CLASSES, slide_size=(100, 100))
    assert pts.x.tolist() == [10.0, 2.0, 4.0]
    assert pts.y.tolist() == [20.5, 1.0, 3.25]
    assert pts.label.tolist() == [2, 3, 1]


def test_read_csv_errors(tmp_path):
    with pytest.raises(LabelError, match="not found"):
        read_points(tmp_path / "missing.csv", CLASSES)
    with pytest.raises(LabelError, match="empty"):
        read_points(_write(tmp_path / "e.csv", ""), CLASSES)
    with pytest.raises(LabelError, match="no points"):
        read_points(_write(tmp_path / "h.csv", "x,y,class\n"), CLASSES)
    with pytest.raises(LabelError, match="lacks column"):
        read_points(_write(tmp_path / "c.csv", "x,y,label\n1,2,tubules\n"), CLASSES)
    with pytest.raises(LabelError, match=r"line 3 has non-numeric coordinates"):
        read_points(_write(tmp_path / "n.csv", "x,y,class\n1,2,tubules\nabc,2,tubules\n"), CLASSES)
    with pytest.raises(LabelError) as err:
        read_points(
            _write(tmp_path / "u.csv", "x,y,class\n1,2,tubule\n1,2,vessel\n1,2,tubule\n1,2,9\n"), CLASSES
        )
    msg = str(err.value)
    assert "'tubule' (line 2)" in msg and "'vessel' (line 3)" in msg and "'9' (line 5)" in msg
    assert "known classes are background, interstitium, tubules, glomeruli, other" in msg
    assert "\n" not in msg and "u.csv" in msg
    with pytest.raises(
        LabelError, match=r"line 2 at \(100, 5\) is outside the slide \(level-0 size 100 x 50"
    ):
        read_points(_write(tmp_path / "o.csv", "x,y,class\n100,5,tubules\n"), CLASSES, slide_size=(100, 50))
    # Without a slide size the same point is accepted.
    assert len(read_points(tmp_path / "o.csv", CLASSES)) == 1


def test_read_geojson_points_multipoints_and_bare_list(tmp_path):
    features = [_point(1.5, 2.5, "tubules"), _point([3, 4], [5, 6], "Interstitium", kind="MultiPoint")]
    pts = read_points(_write(tmp_path / "p.geojson", _fc(features)), CLASSES, slide_size=(10, 10))
    assert pts.x.tolist() == [1.5, 3.0, 4.0] and pts.y.tolist() == [2.5, 5.0, 6.0]
    assert pts.label.tolist() == [2, 1, 1]
    bare = read_points(_write(tmp_path / "b.json", json.dumps(features)), CLASSES)
    assert bare.label.tolist() == [2, 1, 1]
    # A CSV under another suffix is sniffed as CSV.
    assert read_points(_write(tmp_path / "c.points", "x,y,class\n1,2,other\n"), CLASSES).label.tolist() == [4]


def test_read_geojson_skips_other_geometry_and_unclassified_with_warning(tmp_path):
    poly = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
        "properties": {"classification": {"name": "tubules"}},
    }
    unclassified = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {}}
    f = _write(tmp_path / "p.geojson", _fc([poly, unclassified, _point(2, 3, "other")]))
    with pytest.warns(UserWarning) as record:
        pts = read_points(f, CLASSES)
    text = " ".join(str(w.message) for w in record)
    assert "feature 0: Polygon" in text and "unclassified" in text and "feature 1" in text
    assert pts.label.tolist() == [4]


def test_read_geojson_errors(tmp_path):
    with pytest.raises(LabelError, match="not a GeoJSON FeatureCollection"):
        read_points(
            _write(tmp_path / "a.geojson", json.dumps({"type": "Polygon", "coordinates": []})), CLASSES
        )
    with pytest.raises(LabelError, match="invalid JSON at line 1"):
        read_points(_write(tmp_path / "b.geojson", "{nope"), CLASSES)
    with pytest.raises(LabelError, match=r"unknown class name\(s\) 'Tumor' \(feature 1\)"):
        read_points(
            _write(tmp_path / "c.geojson", _fc([_point(1, 1, "tubules"), _point(1, 1, "Tumor")])), CLASSES
        )
    with pytest.raises(LabelError, match=r"feature 0 at \(-1, 1\) is outside the slide"):
        read_points(
            _write(tmp_path / "d.geojson", _fc([_point(-1, 1, "tubules")])), CLASSES, slide_size=(5, 5)
        )
    bad = _point(1, 1, "tubules")
    bad["geometry"]["coordinates"] = ["x", 1]
    with pytest.raises(LabelError, match="non-numeric coordinate"):
        read_points(_write(tmp_path / "e.geojson", _fc([bad])), CLASSES)
    with pytest.raises(LabelError, match="no classified Point features"):
        read_points(_write(tmp_path / "f.geojson", _fc([])), CLASSES)


def test_rasterize_points_radius_overlap_and_bounds():
    pts = PointSet(x=[5.5, 7.5, 100.0, -3.0], y=[5.5, 5.5, 1.0, 1.0], label=[1, 2, 3, 3])
    one = rasterize_points(pts, (12, 12), scale=1.0)
    assert (one != 255).sum() == 2 and one[5, 5] == 1 and one[5, 7] == 2
    disk1 = rasterize_points(PointSet([5.5], [5.5], [1]), (12, 12), 1.0, radius_px=1)
    assert (disk1 == 1).sum() == 5
    disk2 = rasterize_points(PointSet([5.5], [5.5], [1]), (12, 12), 1.0, radius_px=2)
    assert (disk2 == 1).sum() == 13
    both = rasterize_points(pts, (12, 12), 1.0, radius_px=2)
    # The later point wins the overlap, but each centre keeps its own label.
    assert both[5, 5] == 1 and both[5, 6] == 2 and both[5, 7] == 2 and both[5, 4] == 1
    # Overlap of the two 13-px disks: 5 px; point 1 keeps its 8 own + its centre, point 2 loses that centre.
    assert (both == 1).sum() == 13 - 5 + 1 and (both == 2).sum() == 13 - 1
    # Scale: level-0 (10, 10) at 4 level-0 px per mask px -> mask pixel (2, 2).
    scaled = rasterize_points(PointSet([10.0], [10.0], [4]), (3, 3), scale=4.0)
    assert scaled[2, 2] == 4 and (scaled != 255).sum() == 1


def test_write_points_csv_round_trip_exact(tmp_path):
    rng = np.random.default_rng(3)
    pts = PointSet(rng.uniform(0, 1000, 50), rng.uniform(0, 1000, 50), rng.integers(0, 5, 50))
    out = write_points_csv(pts, tmp_path / "sub" / "p.csv", CLASSES)
    assert [p.name for p in out.parent.iterdir()] == ["p.csv"]
    back = read_points(out, CLASSES, slide_size=(1000, 1000))
    assert (
        np.array_equal(back.x, pts.x)
        and np.array_equal(back.y, pts.y)
        and np.array_equal(back.label, pts.label)
    )
    with pytest.raises(LabelError, match="no class name"):
        write_points_csv(PointSet([1], [1], [7]), tmp_path / "bad.csv", CLASSES)


# -- labelled pixels alone (no whole-slide array; labels/store.py) --


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
