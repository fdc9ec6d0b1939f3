"""labels/corrections.py: the pure comparison of a predicted and a corrected GeoJSON (known answers)."""

from __future__ import annotations

from histoseg.labels.annotations import feature_class_name
from histoseg.labels.corrections import extract_corrections


def _square(x: float, name: str | None) -> dict:
    ring = [[x, 0.0], [x + 10.0, 0.0], [x + 10.0, 10.0], [x, 10.0], [x, 0.0]]
    properties = {"classification": {"name": name}} if name else {}
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": properties}


def test_untouched_predictions_are_dropped_and_every_change_is_kept():
    predicted = [_square(0, "tubules"), _square(20, "interstitium"), _square(40, "glomeruli")]
    corrected = [
        _square(0, "tubules"),  # untouched: dropped
        _square(20, "tubules"),  # reclassified: kept
        _square(40.3, "glomeruli"),  # moved by 0.3 px, within the default tolerance 0.5: untouched
        _square(60, "other"),  # new: kept
        _square(80, None),  # unclassified: skipped and counted
    ]
    kept, stats = extract_corrections(predicted, corrected)
    assert [feature_class_name(k) for k in kept] == ["tubules", "other"]
    assert (stats.kept, stats.unchanged, stats.unclassified, stats.empty) == (2, 2, 1, 0)
    assert stats.by_class == {"other": 1, "tubules": 1}
    kept, stats = extract_corrections(predicted, corrected, tolerance=0.1)  # the 0.3 px move now counts
    assert [feature_class_name(k) for k in kept] == ["tubules", "glomeruli", "other"]
