"""Scribble labels: reading QuPath GeoJSON strokes and colour-coded images, and writing strokes.

A scribble is a stroke a few pixels wide drawn inside one structure and given that
structure's class; everything not scribbled is unlabelled (255). This module reads and writes
them (the raster rule is :mod:`histoseg.labels.strokes`; docs/methods.md section 4):

- :func:`read_scribbles_geojson` — QuPath GeoJSON (LineString / MultiLineString buffered to
  a brush width, Polygon / MultiPolygon filled, Point / MultiPoint as brush dots), read with
  the feature reader shared with points (:mod:`histoseg.labels.annotations`);
- :func:`read_scribble_image` — a colour-coded scribble image (one colour per class);
- :func:`write_scribbles_geojson` — strokes as a QuPath FeatureCollection of LineStrings;
- :func:`scribbles_grid` — the ``scribbles`` label kind of :mod:`histoseg.labels.grid`
  (optionally grown to superpixels, :mod:`histoseg.labels.superpixels`).

Scribbles simulated from dense masks are in :mod:`histoseg.labels.simulate`.

Example:
    >>> import json, tempfile, pathlib
    >>> from histoseg.labels.scribbles import read_scribbles_geojson
    >>> line = {"type": "LineString", "coordinates": [[1.5, 2.5], [5.5, 2.5]]}
    >>> feature = {"type": "Feature", "geometry": line, "properties": {"classification": {"name": "tubules"}}}
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.geojson"
    >>> _ = path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    >>> mask, warnings = read_scribbles_geojson(path, ("bg", "int", "tubules"), shape=(5, 8), scale=1, brush_px=3)
    >>> (mask == 2).sum(axis=1).tolist(), warnings
    ([0, 7, 7, 7, 0], [])
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histoseg import IGNORE_INDEX
from histoseg.errors import ConfigError, LabelError
from histoseg.io.files import atomic_path
from histoseg.labels.annotations import ClassLookup, classify_features, load_geojson_features
from histoseg.labels.dense import resample_labels
from histoseg.labels.strokes import Stroke, check_brush, clean_xy, polygon_pixels, stroke_pixels
from histoseg.labels.superpixels import grow_scribbles_on_slide

if TYPE_CHECKING:
    from histoseg.io.slide import Slide
    from histoseg.labels.types import GridOptions, SlideRecord

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
"""Scribble files with these suffixes are colour-coded images; others are GeoJSON."""

DEFAULT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (160, 160, 160),  # background
    (255, 200, 0),  # interstitium
    (0, 150, 255),  # tubules
    (220, 0, 90),  # glomeruli
    (0, 170, 80),  # other
    (140, 80, 200),
    (255, 120, 40),
    (0, 200, 200),
    (120, 60, 20),
    (250, 120, 200),
)
"""QuPath display colours by class index (cycled for more classes)."""


# --------------------------------------------------------------------------------------------
# GeoJSON
# --------------------------------------------------------------------------------------------


def _coords(value: Any, path: Path, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise LabelError(
            f"{path}: {where} has non-numeric coordinates; coordinates must be [x, y] numbers"
        ) from None
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise LabelError(
            f"{path}: {where} has malformed coordinates (shape {arr.shape}); expected a list of [x, y]"
        )
    arr = arr[:, :2]
    if not np.isfinite(arr).all():
        raise LabelError(f"{path}: {where} has non-finite coordinates; fix or delete that annotation")
    return arr


def _flatten_geometry(geometry: Any, path: Path, where: str) -> list[tuple[str, Any]]:
    """Split a GeoJSON geometry into ``("line"|"polygon"|"point", coords)`` parts in order."""
    if not isinstance(geometry, Mapping):
        return []
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "GeometryCollection":
        parts: list[tuple[str, Any]] = []
        for sub in geometry.get("geometries") or []:
            parts.extend(_flatten_geometry(sub, path, where))
        return parts
    if kind == "LineString":
        return [("line", _coords(coords, path, where))]
    if kind == "MultiLineString":
        return [("line", _coords(c, path, where)) for c in coords or []]
    if kind == "Point":
        return [("point", _coords([coords] if coords else [], path, where))]
    if kind == "MultiPoint":
        return [("point", _coords(coords or [], path, where))]
    if kind == "Polygon":
        return [("polygon", [_coords(ring, path, where) for ring in coords or []])]
    if kind == "MultiPolygon":
        return [("polygon", [_coords(ring, path, where) for ring in poly or []]) for poly in coords or []]
    return [("unsupported", kind)]


def read_scribbles_geojson(
    path: str | os.PathLike[str],
    classes: Sequence[str],
    *,
    shape: tuple[int, int],
    scale: float,
    brush_px: float,
    slide_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Rasterise QuPath GeoJSON scribbles into a sparse label mask.

    Features are read in file order with their class from ``properties.classification.name``
    (exact, then case-insensitive match; or an integer index). Coordinates are level-0 pixels;
    mask coordinates are ``level0 / scale``. LineString / MultiLineString are buffered to
    ``brush_px`` (the :func:`rasterize_strokes` rule), Point / MultiPoint become brush dots,
    Polygon / MultiPolygon are filled (pixel centres inside or on the boundary; invalid
    polygons are repaired with ``shapely.make_valid``). **The last feature wins** where
    features of two classes overlap. Parts outside the mask are clipped.

    Skipped with a warning (returned, not raised): empty geometries, unclassified features,
    unsupported geometry types, a file with no usable scribbles.

    Args:
        path: GeoJSON file (FeatureCollection, or a bare list of features).
        classes: Class names in label-index order.
        shape: (H, W) of the mask being made.
        scale: Level-0 pixels per mask pixel (``mask_mpp / slide_mpp``).
        brush_px: Brush width (diameter) in mask pixels (the caller converts from um), >= 1.
        slide_size: Level-0 ``(width, height)``; when given, every coordinate must satisfy
            ``0 <= x <= width`` and ``0 <= y <= height``.

    Returns:
        ``(mask, warnings)``: (H, W) uint8 mask (class index on scribbles, 255 elsewhere) and
        a list of one-line warnings.

    Raises:
        LabelError: missing file, invalid JSON, not a FeatureCollection, unknown class names
            (all listed with the known classes), non-numeric coordinates, coordinates
            outside the slide.
    """
    file, items, brush, messages, names = _read_geojson_items(path, classes, scale, brush_px, slide_size)
    out = _draw_scribbles(items, (int(shape[0]), int(shape[1])), brush, file, names, messages)
    if not items:
        messages.append(f"{file}: no classified scribbles; the mask is all unlabelled")
    return out, messages


def _read_geojson_items(
    path: str | os.PathLike[str],
    classes: Sequence[str],
    scale: float,
    brush_px: float,
    slide_size: tuple[int, int] | None,
) -> tuple[Path, list[tuple[int, str, list[np.ndarray]]], float, list[str], Sequence[str]]:
    """The classified parts of a scribble file in mask pixels: ``(file, items, brush, warnings, classes)``."""
    file = Path(path)
    brush = check_brush(brush_px)
    if not scale > 0:
        raise ConfigError(f"{file}: scale {scale} must be > 0 (level-0 pixels per mask pixel)")
    lookup = ClassLookup(classes)
    features = load_geojson_features(file, "scribbles")
    empty: list[str] = []
    unsupported: list[str] = []
    classified, unclassified = classify_features(
        file, features, lookup, _scribble_parts(file, empty, unsupported)
    )
    items: list[tuple[int, str, list[np.ndarray]]] = []
    for item in classified:
        for kind, data in item.geometry:
            rings = data if kind == "polygon" else [data]
            if slide_size is not None:
                _check_on_slide(file, item.where, rings, slide_size)
            items.append((item.class_index, kind, [clean_xy(ring / scale) for ring in rings]))
    messages = _skip_messages(file, empty, unclassified, unsupported)
    return file, items, brush, messages, lookup.classes


def read_scribbles_geojson_sparse(
    path: str | os.PathLike[str],
    classes: Sequence[str],
    *,
    shape: tuple[int, int],
    scale: float,
    brush_px: float,
    slide_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:func:`read_scribbles_geojson` as its labelled pixels only, without an (H, W) array.

    Returns:
        ``(flat, values, warnings)``: ascending unique flat indices ``r * W + c`` of the labelled
        pixels, their classes (uint8; the last feature wins, as in the mask) and the warnings:
        ``mask.ravel()[flat] == values`` and every other pixel of the mask is 255.
    """
    file, items, brush, messages, names = _read_geojson_items(path, classes, scale, brush_px, slide_size)
    flat, values = _scribble_pixels(items, (int(shape[0]), int(shape[1])), brush, file, names, messages)
    if not items:
        messages.append(f"{file}: no classified scribbles; the mask is all unlabelled")
    return flat, values, messages


def _nonempty(part: tuple[str, Any]) -> bool:
    return bool(part[1]) and len(part[1][0]) > 0 if part[0] == "polygon" else len(part[1]) > 0


def _scribble_parts(
    path: Path, empty: list[str], unsupported: list[str]
) -> Callable[[Mapping[str, Any], str], list[tuple[str, Any]] | None]:
    """The geometry parser of scribble files: a feature's non-empty line / polygon / point parts.

    Features with nothing usable are skipped (None), noted in ``empty`` or ``unsupported``.
    """

    def parse(feature: Mapping[str, Any], where: str) -> list[tuple[str, Any]] | None:
        parts = _flatten_geometry(feature.get("geometry"), path, where)
        kinds = [p for p in parts if p[0] == "unsupported"]
        if kinds:
            unsupported.append(f"{where}: {kinds[0][1]}")
            parts = [p for p in parts if p[0] != "unsupported"]
        parts = [p for p in parts if _nonempty(p)]
        if not parts:
            if not kinds:
                empty.append(where)
            return None
        return parts

    return parse


def _check_on_slide(path: Path, where: str, rings: list[np.ndarray], slide_size: tuple[int, int]) -> None:
    """Raise when a vertex lies outside ``0 <= x <= width``, ``0 <= y <= height`` (level-0)."""
    width, height = slide_size
    for ring in rings:
        bad = (ring[:, 0] < 0) | (ring[:, 0] > width) | (ring[:, 1] < 0) | (ring[:, 1] > height)
        if bad.any():
            x, y = ring[np.argmax(bad)]
            raise LabelError(
                f"{path}: {where} has a vertex at ({x:g}, {y:g}) outside the slide (level-0 size "
                f"{width} x {height} px); coordinates must be level-0 pixels of this slide: "
                "check the "
                "slide/label pairing and export the annotations from this slide's QuPath image"
            )


def _skip_messages(
    path: Path, empty: list[str], unclassified: list[str], unsupported: list[str]
) -> list[str]:
    """One-line warnings for the skipped features."""
    messages: list[str] = []
    if empty:
        messages.append(
            f"{path}: skipped {len(empty)} empty geometr{'y' if len(empty) == 1 else 'ies'}: "
            f"{', '.join(empty[:8])}"
        )
    if unclassified:
        messages.append(
            f"{path}: skipped {len(unclassified)} unclassified feature(s): {', '.join(unclassified[:8])}; "
            "give them a class in QuPath to use them"
        )
    if unsupported:
        messages.append(f"{path}: skipped unsupported geometry: {'; '.join(unsupported[:8])}")
    return messages


def _draw_scribbles(
    items: list[tuple[int, str, list[np.ndarray]]],
    shape: tuple[int, int],
    brush: float,
    path: Path,
    classes: Sequence[str],
    messages: list[str],
) -> np.ndarray:
    """Rasterise ``(class, kind, rings in mask pixels)`` in order (last wins) into an (H, W) mask."""
    out = np.full(shape, IGNORE_INDEX, np.uint8)
    flat, values = _scribble_pixels(items, shape, brush, path, classes, messages)
    out.reshape(-1)[flat] = values
    return out


def _scribble_pixels(
    items: list[tuple[int, str, list[np.ndarray]]],
    shape: tuple[int, int],
    brush: float,
    path: Path,
    classes: Sequence[str],
    messages: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels ``(class, kind, rings in mask pixels)`` label, in order (last wins).

    Returns:
        Ascending unique flat indices into ``shape`` and their uint8 classes: memory of the
        strokes' pixels, not of the mask.
    """
    import shapely
    from shapely.geometry import Polygon

    found: list[np.ndarray] = []
    labels: list[int] = []
    for index, kind, rings in items:
        if kind == "polygon":
            shell, holes = rings[0], [h for h in rings[1:] if len(h) >= 3]
            if len(shell) < 3:
                messages.append(
                    f"{path}: skipped a polygon with fewer than 3 vertices (class {classes[index]})"
                )
                continue
            polygon = Polygon(shell, holes)
            if not polygon.is_valid:
                polygon = shapely.make_valid(polygon)
            found.append(polygon_pixels(polygon, shape))
            labels.append(index)
        elif kind == "point":
            for vertex in rings[0]:
                found.append(stroke_pixels(vertex[None], shape, brush))
                labels.append(index)
        else:
            found.append(stroke_pixels(rings[0], shape, brush))
            labels.append(index)
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8)
    flat = np.concatenate(found).astype(np.int64)
    values = np.repeat(np.asarray(labels, np.uint8), [f.size for f in found])
    # the last write of a pixel wins: its first occurrence in reversed order
    unique, first = np.unique(flat[::-1], return_index=True)
    return unique, values[::-1][first]


def write_scribbles_geojson(
    strokes: Iterable[Stroke | tuple[int, np.ndarray]],
    path: str | os.PathLike[str],
    classes: Sequence[str],
    *,
    scale: float = 1.0,
    colours: Mapping[str, Any] | None = None,
    brush_px: float | None = None,
) -> Path:
    """Write strokes as a QuPath GeoJSON FeatureCollection of LineString annotations.

    Level-0 coordinates are mask pixels times ``scale`` (floats written exactly); a
    one-vertex stroke is written as a LineString with the vertex repeated (a dot). Each
    feature has ``properties.classification = {"name", "color"}`` and
    ``properties.objectType = "annotation"``; ``brush_px`` and ``scale``, when given, are
    recorded under ``properties.histoseg``. Written atomically. Reading the file back with
    :func:`read_scribbles_geojson` (same ``scale`` and ``brush_px``) gives exactly
    :func:`rasterize_strokes` of the strokes.

    Args:
        strokes: ``(class_index, (N, 2) xy)`` pairs in mask pixels.
        path: Destination ``.geojson``.
        classes: Class names in label-index order.
        scale: Level-0 pixels per mask pixel.
        colours: Optional class name -> RGB (or ``"#rrggbb"``) display colours.
        brush_px: Brush width in mask pixels, recorded for information.

    Returns:
        The written path.
    """
    names = tuple(classes)
    palette = {i: DEFAULT_COLOURS[i % len(DEFAULT_COLOURS)] for i in range(len(names))}
    if colours:
        lookup = ClassLookup(names)
        for name, value in colours.items():
            index = lookup.get(name)
            if index is not None:
                palette[index] = parse_colour(value, f"colours.{name}")
    features = []
    for class_index, xy in strokes:
        index = int(class_index)
        if not 0 <= index < len(names):
            raise LabelError(
                f"{path}: stroke class index {index} has no class name (classes: {', '.join(names)})"
            )
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2) * float(scale)
        if len(pts) == 0:
            continue
        if len(pts) == 1:
            pts = np.repeat(pts, 2, axis=0)
        props: dict[str, Any] = {
            "objectType": "annotation",
            "classification": {"name": names[index], "color": list(palette[index])},
        }
        if brush_px is not None:
            props["histoseg"] = {"brush_px": float(brush_px), "scale": float(scale)}
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": pts.tolist()},
                "properties": props,
            }
        )
    final = Path(path)
    with atomic_path(final) as tmp:
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return final


# --------------------------------------------------------------------------------------------
# Colour-coded scribble images
# --------------------------------------------------------------------------------------------


def parse_colour(value: Any, option: str = "colour") -> tuple[int, int, int]:
    """Parse ``(r, g, b)`` / ``[r, g, b]`` (0-255) or ``"#rrggbb"`` into an RGB tuple."""
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) == 6:
            try:
                return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
            except ValueError:
                pass
    elif isinstance(value, (list, tuple, np.ndarray)) and len(value) == 3:
        try:
            rgb = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            rgb = ()
        if len(rgb) == 3 and all(
            0 <= v <= 255 and float(v) == float(w) for v, w in zip(rgb, value, strict=True)
        ):
            return rgb  # type: ignore[return-value]
    raise ConfigError(
        f"{option}: {value!r} is not a colour; write [r, g, b] with 0-255 integers or '#rrggbb'"
    )


def read_scribble_image(
    path: str | os.PathLike[str],
    colours: Mapping[str, Any],
    classes: Sequence[str],
    *,
    tolerance: int = 0,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read a colour-coded scribble image (one colour per class) into a sparse label mask.

    A pixel gets the class whose configured colour is nearest (max absolute channel
    difference, ties to the class listed first in ``colours``) when that difference is at
    most ``tolerance``. **Unlabelled** (255): fully transparent pixels (alpha 0), and white
    ``(255, 255, 255)`` and black ``(0, 0, 0)`` (within ``tolerance``) unless that colour is
    configured for a class. Any other colour is an error. Palette, grey and RGB(A) PNG/TIFF
    images are accepted; use a lossless format (JPEG blurs colours).

    Args:
        path: The image file.
        colours: Class name -> colour (``[r, g, b]`` or ``"#rrggbb"``).
        classes: Class names in label-index order.
        tolerance: Allowed per-channel difference (0-255).
        shape: Optional expected (H, W); a different size is an error.

    Returns:
        (H, W) uint8 mask: class index where scribbled, 255 elsewhere.

    Raises:
        LabelError: missing/unreadable image, wrong size, colours not in ``colours``.
        ConfigError: a colour or class name in ``colours`` is invalid, or two classes share a colour.
    """
    from PIL import Image, UnidentifiedImageError

    file = Path(path)
    lookup = ClassLookup(classes)
    if not colours:
        raise ConfigError(f"{file}: no scribble colours configured; set colours: {{class name: [r, g, b]}}")
    table: list[tuple[int, tuple[int, int, int]]] = []
    bad = [str(name) for name in colours if lookup.get(name) is None]
    if bad:
        raise ConfigError(
            f"colours: unknown class name(s) {', '.join(bad)}; known classes are {', '.join(lookup.classes)}"
        )
    for name, value in colours.items():
        colour = parse_colour(value, f"colours.{name}")
        if any(colour == other for _, other in table):
            raise ConfigError(
                f"colours: {name} reuses the colour {colour} of another class; give each class its own colour"
            )
        table.append((int(lookup.get(name)), colour))  # type: ignore[arg-type]
    if not file.is_file():
        raise LabelError(f"{file}: scribble image not found; check the 'labels' path in the slide table")
    try:
        with Image.open(file) as image:
            rgba = np.asarray(image.convert("RGBA"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise LabelError(
            f"{file}: cannot read the scribble image ({exc}); save it as an RGB or RGBA PNG"
        ) from None
    height, width = rgba.shape[:2]
    if shape is not None and (height, width) != (int(shape[0]), int(shape[1])):
        raise LabelError(
            f"{file}: scribble image is {width} x {height} px but the label mask must be "
            f"{shape[1]} x {shape[0]}; "
            "export the scribble image at the training resolution"
        )
    rgb = rgba[..., :3].astype(np.int16)
    opaque = rgba[..., 3] > 0
    best = np.full((height, width), 256, np.int16)
    label = np.full((height, width), IGNORE_INDEX, np.uint8)
    for index, colour in table:
        dist = np.abs(rgb - np.asarray(colour, np.int16)).max(axis=-1)
        better = dist < best
        best[better] = dist[better]
        label[better] = index
    matched = opaque & (best <= tolerance)
    out = np.where(matched, label, IGNORE_INDEX).astype(np.uint8)
    configured = {colour for _, colour in table}
    blank = ~opaque
    for neutral in ((255, 255, 255), (0, 0, 0)):
        if neutral not in configured:
            blank |= np.abs(rgb - np.asarray(neutral, np.int16)).max(axis=-1) <= tolerance
    unknown = ~matched & ~blank
    if unknown.any():
        values, counts = np.unique(rgb[unknown].astype(np.uint8), axis=0, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:5]
        listed = ", ".join(f"{tuple(int(v) for v in values[i])} x {int(counts[i])} px" for i in order)
        raise LabelError(
            f"{file}: {len(values)} colour(s) are not scribble colours ({listed}); add them to colours "
            f"(class: [r, g, b]), raise the tolerance (now {tolerance}), or repaint them; white, black and "
            "transparent pixels are unlabelled"
        )
    return out


def resample_sparse(level0: np.ndarray, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """Sparse level-0 labels onto a coarser grid.

    A training pixel takes a labelled value from its footprint (the last in raster order, so thin
    strokes survive downsampling), 255 when its footprint holds none.
    """
    if scale <= 1.0:
        return resample_labels(level0, (0, 0), scale, (0, 0), shape)
    out = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
    rows, cols = np.nonzero(level0 != IGNORE_INDEX)
    r = np.minimum((rows / scale).astype(np.int64), shape[0] - 1)
    c = np.minimum((cols / scale).astype(np.int64), shape[1] - 1)
    out[r, c] = level0[rows, cols]
    return out


def scribbles_grid(
    record: SlideRecord, slide: Slide, options: GridOptions
) -> tuple[np.ndarray, tuple[float, float]]:
    """The ``scribbles`` label kind: a slide's scribbles on a whole-slide training grid.

    A GeoJSON file is rasterised at the training mpp with brush ``options.brush_um`` (its
    warnings are logged); a colour-coded image (:data:`IMAGE_SUFFIXES`, level-0 size) is read
    with ``options.scribble_colours`` and resampled. With ``options.grow_um > 0`` the strokes
    are then grown to superpixels (:func:`histoseg.labels.superpixels.grow_scribbles_on_slide`).

    Returns:
        ``(labels, origin)``: (H, W) uint8 labels (255 = unlabelled), origin level-0 ``(0, 0)``.
    """
    scale = options.mpp / slide.mpp
    width, height = slide.dimensions
    shape = (max(1, math.floor(height / scale)), max(1, math.floor(width / scale)))
    path = Path(record.labels)  # type: ignore[arg-type]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        level0 = read_scribble_image(
            path, options.scribble_colours or {}, options.classes, shape=(height, width)
        )
        grid = resample_sparse(level0, scale, shape)
    else:
        grid, messages = read_scribbles_geojson(
            path,
            options.classes,
            shape=shape,
            scale=scale,
            brush_px=options.brush_um / options.mpp,
            slide_size=(width, height),
        )
        for message in messages:
            log.warning("%s: %s", path, message)
    if options.grow_um > 0 and (grid != IGNORE_INDEX).any():
        grid = grow_scribbles_on_slide(
            slide,
            grid,
            scale,
            options.mpp,
            options.grow_um / options.mpp,
            classes=options.grow_class_indices(),
        )
    return grid, (0.0, 0.0)


def scribbles_sparse(
    record: SlideRecord, slide: Slide, options: GridOptions
) -> tuple[tuple[int, int], np.ndarray, np.ndarray, tuple[float, float]] | None:
    """The ``scribbles`` label kind as labelled pixels only (:mod:`histoseg.labels.store`).

    The pixels of :func:`scribbles_grid` for a GeoJSON file without growth, made stroke by stroke
    with no whole-slide array. None for a scribble image or ``options.grow_um > 0`` (those are
    made on the whole grid by :func:`scribbles_grid`).

    Returns:
        ``(shape, flat, values, origin)``: the grid's (H, W), ascending flat indices of its
        labelled pixels, their uint8 classes, and the level-0 origin ``(0, 0)``.
    """
    path = Path(record.labels)  # type: ignore[arg-type]
    if path.suffix.lower() in IMAGE_SUFFIXES or options.grow_um > 0:
        return None
    scale = options.mpp / slide.mpp
    width, height = slide.dimensions
    shape = (max(1, math.floor(height / scale)), max(1, math.floor(width / scale)))
    flat, values, messages = read_scribbles_geojson_sparse(
        path,
        options.classes,
        shape=shape,
        scale=scale,
        brush_px=options.brush_um / options.mpp,
        slide_size=(width, height),
    )
    for message in messages:
        log.warning("%s: %s", path, message)
    return shape, flat, values, (0.0, 0.0)


__all__ = [
    "DEFAULT_COLOURS",
    "IMAGE_SUFFIXES",
    "parse_colour",
    "read_scribble_image",
    "read_scribbles_geojson",
    "read_scribbles_geojson_sparse",
    "resample_sparse",
    "scribbles_grid",
    "scribbles_sparse",
    "write_scribbles_geojson",
]
