"""QuPath corrections -> training labels: only what the user corrected counts.

The loop (step by step with QuPath's menu names in ``docs/qupath.md``):

1. ``histoseg quantify`` writes ``<stem>.geojson``, one annotation per predicted region, named
   ``histoseg prediction`` (:data:`histoseg.report.geojson.PREDICTION_NAME`);
2. in QuPath the user imports it (File > Import objects), fixes what is wrong (redraws a region
   with the brush or wand, deletes it and draws a new one, paints correction strokes with the
   line/polyline tools, or selects a region and uses Set class) and exports everything (File >
   Export objects as GeoJSON);
3. :func:`extract_corrections` (run by the command :mod:`histoseg.corrections`:
   ``histoseg corrections --predicted A.geojson --corrected B.geojson --out labels.geojson``)
   compares the export with the prediction: a corrected feature whose class and geometry match a
   predicted feature (boundary moved by at most ``tolerance`` level-0 pixels on average:
   symmetric-difference area <= tolerance x perimeter) is **untouched and dropped**; every other
   classified feature (new, redrawn, reclassified, strokes and points) is kept as a label;
4. the output is a scribble GeoJSON: a slide-table row ``kind=scribbles`` rasterises it
   (:func:`histoseg.labels.scribbles.read_scribbles_geojson`: polygons filled, lines buffered to
   the brush width), everything else unlabelled; fine-tune from the same checkpoint with
   ``model.init_checkpoint`` (the ``configs/kidney_scribbles.yaml`` recipe).

Deleted predictions carry no class and are not labels; unclassified features are skipped with
a count. Coordinates are level-0 slide pixels in both files (as QuPath exports them).

Example:
    >>> square = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}
    >>> f = {"type": "Feature", "geometry": square, "properties": {"classification": {"name": "tubules"}}}
    >>> g = {**f, "properties": {"classification": {"name": "glomeruli"}}}  # reclassified in QuPath
    >>> kept, stats = extract_corrections([f], [f, g])
    >>> [feature_class_name(k) for k in kept], stats.unchanged
    (['glomeruli'], 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from histoseg.labels.annotations import feature_class_name

__all__ = ["CorrectionStats", "extract_corrections"]


class CorrectionStats(NamedTuple):
    """What :func:`extract_corrections` found in the corrected file."""

    kept: int
    unchanged: int
    unclassified: int
    empty: int
    by_class: dict[str, int]


def _shape(feature: Mapping[str, Any]) -> Any:
    """The feature's shapely geometry (polygons repaired), or None when absent/empty/invalid."""
    import shapely.errors
    import shapely.geometry
    from shapely.validation import make_valid

    geometry = feature.get("geometry")
    if not geometry:
        return None
    try:
        shape = shapely.geometry.shape(geometry)
        if shape.is_empty:
            return None
        if shape.geom_type in ("Polygon", "MultiPolygon") and not shape.is_valid:
            shape = make_valid(shape)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, shapely.errors.ShapelyError):
        return None  # the command checks geometries first (check_geometry); this is for direct callers
    return shape


def _same(a: Any, b: Any, tolerance: float) -> bool:
    """Whether two geometries are the same region (areas: boundary within ``tolerance`` px on average)."""
    if (a.area > 0) != (b.area > 0):
        return False
    if a.area > 0:
        return a.symmetric_difference(b).area <= tolerance * max(a.length, b.length) + 1e-9
    return a.geom_type == b.geom_type and (bool(a.equals_exact(b, tolerance)) or bool(a.equals(b)))


def extract_corrections(
    predicted: Sequence[Mapping[str, Any]], corrected: Sequence[Mapping[str, Any]], tolerance: float = 0.5
) -> tuple[list[dict[str, Any]], CorrectionStats]:
    """The corrected features that are labels: those not an untouched copy of a predicted feature.

    Args:
        predicted: Features of the prediction GeoJSON (``histoseg quantify`` output).
        corrected: Features exported from QuPath after correcting.
        tolerance: Level-0 pixels a boundary may move (rounding on export) and still be untouched.

    Returns:
        ``(features, stats)``: the label features in file order (geometry and class as exported,
        ``properties.histoseg = "correction"``), and counts.
    """
    from shapely import STRtree

    shapes, names = [], []
    for feature in predicted:
        shape = _shape(feature)
        if shape is not None:
            shapes.append(shape)
            names.append(feature_class_name(feature))
    tree = STRtree(shapes) if shapes else None
    kept: list[dict[str, Any]] = []
    unchanged = unclassified = empty = 0
    by_class: dict[str, int] = {}
    for feature in corrected:
        name = feature_class_name(feature)
        shape = _shape(feature)
        if shape is None:
            empty += 1
            continue
        if name is None:
            unclassified += 1
            continue
        candidates = tree.query(shape) if tree is not None else []
        if any(names[i] == name and _same(shape, shapes[i], tolerance) for i in candidates):
            unchanged += 1
            continue
        properties = dict(feature.get("properties") or {})
        properties["histoseg"] = "correction"
        if properties.get("name") == "histoseg prediction":  # report.geojson.PREDICTION_NAME, edited
            properties["name"] = "corrected prediction"
        kept.append({"type": "Feature", "geometry": feature["geometry"], "properties": properties})
        by_class[name] = by_class.get(name, 0) + 1
    return kept, CorrectionStats(len(kept), unchanged, unclassified, empty, by_class)
