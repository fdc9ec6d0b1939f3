"""labels/annotations.py: one class lookup for points and scribbles read from the same annotation file."""

import pytest

from histoseg import KIDNEY_CLASSES
from histoseg.errors import LabelError


def _geojson(path, features):
    import json

    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _point_feature(x, y, name):
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [x, y]},
        "properties": {"classification": {"name": name}},
    }


def test_points_and_scribbles_read_the_same_classes_from_one_file(tmp_path):
    from histoseg.labels.points import read_points
    from histoseg.labels.scribbles import read_scribbles_geojson

    names = ["Tubules", "interstitium", "2", "GLOMERULI", "other"]
    xy = [(3.5, 4.5), (10.5, 2.5), (6.5, 9.5), (15.5, 12.5), (1.5, 14.5)]
    path = _geojson(
        tmp_path / "both.geojson", [_point_feature(x, y, n) for (x, y), n in zip(xy, names, strict=True)]
    )
    points = read_points(path, KIDNEY_CLASSES)
    mask, warnings = read_scribbles_geojson(path, KIDNEY_CLASSES, shape=(16, 20), scale=1.0, brush_px=1)
    assert warnings == []
    assert points.label.tolist() == [2, 1, 2, 3, 4]
    assert [int(mask[int(y), int(x)]) for x, y in xy] == points.label.tolist()
    assert (mask != 255).sum() == 5


def test_points_and_scribbles_give_the_same_unknown_class_error(tmp_path):
    from histoseg.labels.points import read_points
    from histoseg.labels.scribbles import read_scribbles_geojson

    features = [_point_feature(1, 1, "tubules"), _point_feature(2, 2, "Tumour"), _point_feature(3, 3, "Cyst")]
    path = _geojson(tmp_path / "bad.geojson", features)
    with pytest.raises(LabelError) as from_points:
        read_points(path, KIDNEY_CLASSES)
    with pytest.raises(LabelError) as from_scribbles:
        read_scribbles_geojson(path, KIDNEY_CLASSES, shape=(8, 8), scale=1.0, brush_px=1)
    assert (
        str(from_points.value)
        == str(from_scribbles.value)
        == (
            f"{path}: unknown class name(s) 'Tumour' (feature 1), 'Cyst' (feature 2); known classes are "
            "background, interstitium, tubules, glomeruli, other (or their indices 0-4); "
            "rename the classes in the label file or set the model's classes to match"
        )
    )


def test_classify_features_skips_unparsed_and_lists_unclassified(tmp_path):
    from histoseg.labels.annotations import ClassLookup, classify_features

    features = [
        _point_feature(1, 1, "glomeruli"),
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [2, 2]},
            "properties": {"name": "n"},
        },
        {"type": "Feature", "geometry": None, "properties": {"classification": {"name": "Nope"}}},
        _point_feature(4, 4, "1"),
    ]
    parsed, unclassified = classify_features(
        tmp_path / "f.geojson",
        features,
        ClassLookup(KIDNEY_CLASSES),
        lambda feature, where: feature["geometry"],  # None geometry: not this reader's, skipped first
    )
    assert [(c.class_index, c.where) for c in parsed] == [(3, "feature 0"), (1, "feature 3")]
    assert parsed[0].geometry == {"type": "Point", "coordinates": [1, 1]}
    assert unclassified == ["feature 1 ('n')"]
