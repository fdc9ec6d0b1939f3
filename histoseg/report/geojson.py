"""Label map -> QuPath-importable GeoJSON annotations.

This module owns the vector export of a label map: one GeoJSON ``Feature`` per connected region
of each class (4-connectivity: pixels touching only at a corner are separate regions), with its
holes, as QuPath reads it (File > Import objects): ``properties.objectType = "annotation"``,
``properties.classification = {"name": ..., "color": [r, g, b]}``, ``properties.name =
"histoseg prediction"`` (:data:`PREDICTION_NAME`), coordinates in **level-0
pixels of the source slide** (label-map pixels x level downsample x label mpp / slide mpp).
The background (glass) class and unlabelled pixels (255) are not exported.

Polygons follow pixel edges exactly (:func:`label_map_to_features` with ``simplify=0``):
rasterising them back at pixel centres gives the label map again. Boundary edges of each class
are linked into rings in one vectorised pass (at a vertex where two pixels of the region touch
only diagonally, the ring turns so that each ring stays simple), collinear vertices are dropped,
and rings are grouped into polygons per connected component. Exterior rings are counterclockwise
(RFC 7946) in the (x, y) coordinates as written. A small Douglas-Peucker simplification
(``simplify`` in label-map pixels, topology preserved) removes the staircase.

Bounded memory for big maps: :func:`labels_tif_to_geojson` polygonises the finest pyramid level of
the label-map TIFF with at most ``max_pixels`` pixels (default 4096 x 4096 = 16.8 MP; about
100 bytes per pixel of working memory at most), never level 0 of a large map.

Example:
    >>> import numpy as np
    >>> from histoseg.report.geojson import label_map_to_geojson
    >>> labels = np.zeros((4, 4), np.uint8); labels[1:3, 1:3] = 2
    >>> fc = label_map_to_geojson(labels, ["background", "interstitium", "tubules"], scale=10.0)
    >>> fc["features"][0]["geometry"]["coordinates"][0][:3]
    [[10.0, 30.0], [30.0, 30.0], [30.0, 10.0]]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from histoseg.errors import HistosegError
from histoseg.io.files import atomic_path
from histoseg.report.areas import class_colors, find_class, read_label_level

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "PREDICTION_NAME",
    "label_map_to_features",
    "label_map_to_geojson",
    "labels_tif_to_geojson",
    "trace_regions",
    "write_geojson",
]

PREDICTION_NAME = "histoseg prediction"
"""``properties.name`` of every predicted feature (QuPath shows it and keeps it on export)."""

DEFAULT_MAX_PIXELS = 4096 * 4096
"""Largest label-map level (pixels) polygonised by :func:`labels_tif_to_geojson`."""

# Directions in image coordinates (x right, y down): 0 = east, 1 = south, 2 = west, 3 = north.
_DX = np.array([1, 0, -1, 0])
_DY = np.array([0, 1, 0, -1])


def trace_regions(mask: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Exact pixel-edge polygons of the 4-connected regions of a binary mask.

    Args:
        mask: (H, W) bool.

    Returns:
        One ``(shell, holes)`` per connected region: (K, 2) float64 arrays of (x, y) vertices in
        pixel-corner coordinates (pixel (r, c) spans x in [c, c + 1], y in [r, r + 1]), open rings
        (first vertex not repeated), shell counterclockwise in (x, y) (positive shoelace area),
        holes clockwise; collinear vertices removed.
    """
    mask = np.asarray(mask, dtype=bool)
    comp, count = ndimage.label(mask)  # 4-connectivity (default structure)
    if count == 0:
        return []
    height, width = mask.shape
    padded = np.pad(comp, 1)
    inner = padded[1:-1, 1:-1]
    rows_v = width + 1  # vertex id = y * (W + 1) + x
    starts, ends, dirs, comps = [], [], [], []
    # (neighbour slice, direction, start corner offset (dx, dy), end corner offset) per side.
    sides = (
        (padded[:-2, 1:-1], 0, (0, 0), (1, 0)),  # top edge, heading east
        (padded[1:-1, 2:], 1, (1, 0), (1, 1)),  # right edge, heading south
        (padded[2:, 1:-1], 2, (1, 1), (0, 1)),  # bottom edge, heading west
        (padded[1:-1, :-2], 3, (0, 1), (0, 0)),  # left edge, heading north
    )
    for neighbour, side, (sx, sy), (ex, ey) in sides:
        r, c = np.nonzero((inner > 0) & (neighbour != inner))
        starts.append((r + sy) * rows_v + (c + sx))
        ends.append((r + ey) * rows_v + (c + ex))
        dirs.append(np.full(r.size, side, np.int8))
        comps.append(inner[r, c])
    start = np.concatenate(starts)
    end = np.concatenate(ends)
    direction = np.concatenate(dirs)
    component = np.concatenate(comps)

    # Link each edge to the edge leaving its end vertex (two candidates at diagonal contacts).
    order = np.argsort(start, kind="stable")
    sorted_start = start[order]
    left = np.searchsorted(sorted_start, end, side="left")
    right = np.searchsorted(sorted_start, end, side="right")
    first = order[left]
    nxt = first.copy()
    saddle = np.flatnonzero(right - left == 2)
    if saddle.size:
        a = order[left[saddle]]
        b = order[left[saddle] + 1]
        turn_left = (direction[saddle] + 3) % 4
        left_edge = np.where(direction[a] == turn_left, a, b)
        right_edge = np.where(direction[a] == turn_left, b, a)
        # Same region on both sides of the contact: pivot around the outside pixel (turn left) so
        # the ring follows one outside region; different regions: stay with this region (turn right).
        same = component[left_edge] == component[saddle]
        nxt[saddle] = np.where(same, left_edge, right_edge)

    # Walk the cycles of the permutation ``nxt``.
    nxt_list = nxt.tolist()
    seen = bytearray(len(nxt_list))
    ring_order: list[int] = []
    ring_bounds: list[int] = [0]
    for e0 in range(len(nxt_list)):
        if seen[e0]:
            continue
        e = e0
        while not seen[e]:
            seen[e] = 1
            ring_order.append(e)
            e = nxt_list[e]
        ring_bounds.append(len(ring_order))
    idx = np.asarray(ring_order, dtype=np.int64)
    bounds = np.asarray(ring_bounds, dtype=np.int64)
    # Twice the signed (shoelace) area of each ring: sum over its edges of x_s * y_e - x_e * y_s.
    cross = (start[idx] % rows_v) * (end[idx] // rows_v) - (end[idx] % rows_v) * (start[idx] // rows_v)
    area2 = np.add.reduceat(cross, bounds[:-1])
    # Keep a vertex only where the direction changes (previous edge of the same ring, cyclic).
    prev_pos = np.arange(idx.size) - 1
    prev_pos[bounds[:-1]] = bounds[1:] - 1
    corner = direction[idx] != direction[idx[prev_pos]]
    kept = idx[corner]
    coords = np.stack([start[kept] % rows_v, start[kept] // rows_v], axis=1).astype(np.float64)
    kept_bounds = np.concatenate([[0], np.cumsum(np.add.reduceat(corner.astype(np.int64), bounds[:-1]))])
    ring_component = component[idx[bounds[:-1]]]

    shells: dict[int, np.ndarray] = {}
    holes: dict[int, list[np.ndarray]] = {}
    for ring, (label, area) in enumerate(zip(ring_component.tolist(), area2.tolist(), strict=True)):
        ring_coords = coords[kept_bounds[ring] : kept_bounds[ring + 1]]
        if area > 0:
            shells[label] = ring_coords
        else:
            holes.setdefault(label, []).append(ring_coords)
    return [(shells[label], holes.get(label, [])) for label in sorted(shells)]


def label_map_to_features(
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    scale: float | tuple[float, float] = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
    background: str | int | None = "background",
    colors: np.ndarray | None = None,
    simplify: float = 0.0,
    min_pixels: int = 1,
    decimals: int = 2,
) -> list[dict[str, Any]]:
    """GeoJSON features (one per connected region per class) of a label map.

    Args:
        labels: (H, W) uint8 class indices (255 = unlabelled, not exported).
        classes: Class names, index order.
        scale: Output units per label-map pixel, one value or ``(sx, sy)``.
        offset: ``(x, y)`` added after scaling.
        background: Name or index of the class not exported (glass), or None.
        colors: (C, 3) uint8 class colours (default :func:`histoseg.report.areas.class_colors`).
        simplify: Douglas-Peucker tolerance in label-map pixels (0 = exact pixel edges).
        min_pixels: Regions with fewer pixels are dropped.
        decimals: Coordinates are rounded to this many decimals.

    Returns:
        A list of ``Feature`` dicts with Polygon (or, after simplification, MultiPolygon) geometry.
    """
    import shapely
    from shapely.geometry import MultiPolygon, Polygon
    from shapely.validation import make_valid

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise HistosegError(f"label map must be 2-D (H, W), got shape {labels.shape}")
    sx, sy = (scale, scale) if not isinstance(scale, (tuple, list)) else (scale[0], scale[1])
    colors = class_colors(classes) if colors is None else np.asarray(colors)
    bg_index = find_class(classes, background) if isinstance(background, str) else background
    polygons: list[Any] = []
    owners: list[int] = []
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256)[: len(classes)])
    for cls in present.tolist():
        if cls == bg_index:
            continue
        mask = labels == cls
        if min_pixels > 1:
            comp, _ = ndimage.label(mask)
            sizes = np.bincount(comp.ravel())
            mask = (sizes[comp] >= min_pixels) & mask
        for shell, holes in trace_regions(mask):
            polygons.append(Polygon(shell, holes))
            owners.append(cls)
    if not polygons:
        return []
    geoms = np.empty(len(polygons), dtype=object)
    geoms[:] = polygons
    if simplify > 0:
        geoms = shapely.simplify(geoms, simplify, preserve_topology=True)
        for i in np.flatnonzero(~shapely.is_valid(geoms)).tolist():
            fixed = make_valid(geoms[i])
            parts = [
                g for g in getattr(fixed, "geoms", [fixed]) if g.geom_type == "Polygon" and not g.is_empty
            ]
            geoms[i] = None if not parts else parts[0] if len(parts) == 1 else MultiPolygon(parts)
    offset_arr = np.asarray(offset, dtype=np.float64)
    factor = np.array([sx, sy], dtype=np.float64)
    geoms = shapely.transform(geoms, lambda xy: np.round(xy * factor + offset_arr, decimals))
    texts = shapely.to_geojson(geoms)
    features: list[dict[str, Any]] = []
    for cls, geom, text in zip(owners, geoms, texts, strict=True):
        if geom is None or geom.is_empty:
            continue
        features.append(
            {
                "type": "Feature",
                "geometry": json.loads(text),
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": str(classes[cls]), "color": [int(v) for v in colors[cls][:3]]},
                    "name": PREDICTION_NAME,
                    "isLocked": False,
                },
            }
        )
    return features


def label_map_to_geojson(labels: np.ndarray, classes: Sequence[str], **kwargs: Any) -> dict[str, Any]:
    """A ``FeatureCollection`` of :func:`label_map_to_features` (same arguments)."""
    return {"type": "FeatureCollection", "features": label_map_to_features(labels, classes, **kwargs)}


def labels_tif_to_geojson(
    path: str | os.PathLike[str],
    classes: Sequence[str],
    *,
    slide_mpp: float,
    label_mpp: float,
    background: str | int | None = "background",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    simplify: float = 0.5,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """GeoJSON of a label-map TIFF in level-0 pixels of its source slide, at a bounded level.

    Args:
        path: Label-map TIFF (pyramidal; written by :func:`histoseg.inference.predict.predict_slide`).
        classes: Class names.
        slide_mpp: Level-0 mpp of the source slide.
        label_mpp: Level-0 mpp of the label map.
        background: Class not exported.
        max_pixels: The finest pyramid level with at most this many pixels is polygonised.
        simplify: Douglas-Peucker tolerance in pixels of that level.

    Returns:
        ``(feature_collection, info)``; ``info`` has ``level_shape`` (h, w), ``scale`` (level-0 slide
        pixels per polygonised pixel, x and y) and ``features``.
    """
    if not (slide_mpp > 0 and label_mpp > 0 and math.isfinite(slide_mpp) and math.isfinite(label_mpp)):
        raise HistosegError(f"slide_mpp={slide_mpp}, label_mpp={label_mpp}: both must be positive")
    labels, (ds_x, ds_y), _ = read_label_level(path, max_pixels)
    factor = label_mpp / slide_mpp
    scale = (ds_x * factor, ds_y * factor)
    collection = label_map_to_geojson(labels, classes, scale=scale, background=background, simplify=simplify)
    info = {"level_shape": list(labels.shape), "scale": list(scale), "features": len(collection["features"])}
    return collection, info


def write_geojson(path: str | os.PathLike[str], collection: dict[str, Any]) -> Path:
    """Write a FeatureCollection as compact JSON, atomically; returns the path."""
    final = Path(path)
    with atomic_path(final) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(collection, handle, separators=(",", ":"))
    return final
