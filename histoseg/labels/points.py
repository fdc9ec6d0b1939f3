"""Grid-point labels: reading, rasterising onto the training grid, and writing.

Pathologists label a slide for stereology by giving a class to each point of a regular
grid (docs/methods.md section 4). This module owns those labels:

- :class:`PointSet` — points in **level-0 pixels** ``(x, y)`` with a uint8 class index each;
- :func:`read_points` — a CSV file (header ``x,y,class``) or a QuPath GeoJSON export of
  Point / MultiPoint annotations (``properties.classification.name``);
- :func:`rasterize_points` — points into a sparse uint8 label mask (255 = unlabelled);
- :func:`write_points_csv` — the CSV form, written atomically;
- :func:`points_grid` — the ``points`` label kind of :mod:`histoseg.labels.grid`.

Grid points drawn from a dense mask (experiments) are in :mod:`histoseg.labels.simulate`; point
counting (area fractions with Wilson intervals) is report arithmetic, in
:mod:`histoseg.report.point_counts`. GeoJSON files are read with the feature reader shared with
scribbles (:mod:`histoseg.labels.annotations`).

Example:
    >>> import numpy as np
    >>> from histoseg.labels.points import rasterize_points
    >>> from histoseg.labels.simulate import grid_points_from_mask
    >>> mask = np.zeros((8, 8), np.uint8); mask[:, 4:] = 2
    >>> pts = grid_points_from_mask(mask, spacing_px=4, scale=2.0)  # level-0 = 2 x mask px
    >>> pts.x.tolist(), pts.y.tolist(), pts.label.tolist()
    ([4.0, 12.0, 4.0, 12.0], [4.0, 4.0, 12.0, 12.0], [0, 2, 0, 2])
    >>> sparse = rasterize_points(pts, (8, 8), scale=2.0)
    >>> int((sparse != 255).sum()), int(sparse[2, 6])
    (4, 2)
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histoseg import IGNORE_INDEX
from histoseg.errors import HistosegError, LabelError
from histoseg.io.files import atomic_path
from histoseg.labels.annotations import ClassLookup, classify_features, load_geojson_features

if TYPE_CHECKING:
    from histoseg.io.slide import Slide
    from histoseg.labels.types import GridOptions, SlideRecord


@dataclass
class PointSet:
    """Labelled points.

    Attributes:
        x: (N,) float64, level-0 pixel column of each point.
        y: (N,) float64, level-0 pixel row of each point.
        label: (N,) uint8 class index of each point.
    """

    x: np.ndarray
    y: np.ndarray
    label: np.ndarray

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float64).reshape(-1)
        self.y = np.asarray(self.y, dtype=np.float64).reshape(-1)
        self.label = np.asarray(self.label, dtype=np.uint8).reshape(-1)
        if not (len(self.x) == len(self.y) == len(self.label)):
            raise ValueError(
                f"PointSet: x, y and label lengths differ ({len(self.x)}, {len(self.y)}, {len(self.label)})"
            )

    def __len__(self) -> int:
        return int(self.label.shape[0])


def _check_inside(path: Path, x: float, y: float, where: str, slide_size: tuple[int, int] | None) -> None:
    if not (math.isfinite(x) and math.isfinite(y)):
        raise LabelError(f"{path}: {where} has a non-finite coordinate ({x}, {y}); fix or remove that point")
    if slide_size is None:
        return
    width, height = slide_size
    if not (0 <= x < width and 0 <= y < height):
        raise LabelError(
            f"{path}: {where} at ({x:g}, {y:g}) is outside the slide (level-0 size {width} x {height} px); "
            "coordinates must be level-0 pixels of this slide: "
            "check the slide/label pairing and the export settings"
        )


def _read_points_csv(path: Path, lookup: ClassLookup, slide_size: tuple[int, int] | None) -> PointSet:
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise LabelError(
            f"{path}: cannot read the points file ({exc.strerror}); check the path and permissions"
        ) from None
    with handle:
        try:
            sample = handle.read(4096)
        except UnicodeDecodeError:
            raise LabelError(
                f"{path}: the points file is not UTF-8 text; save it as a UTF-8 CSV with header x,y,class"
            ) from None
        if not sample.strip():
            raise LabelError(
                f"{path}: the points file is empty; write a CSV with header x,y,class and one row per point"
            )
        handle.seek(0)
        delimiter = "\t" if sample.splitlines()[0].count("\t") > sample.splitlines()[0].count(",") else ","
        reader = csv.reader(handle, delimiter=delimiter)
        header = [h.strip().lower() for h in next(reader)]
        missing = [c for c in ("x", "y", "class") if c not in header]
        if missing:
            raise LabelError(
                f"{path}: the header {','.join(header)} lacks column(s) {', '.join(missing)}; "
                "the first line must name the columns x,y,class (extra columns are ignored)"
            )
        ix, iy, ic = header.index("x"), header.index("y"), header.index("class")
        xs: list[float] = []
        ys: list[float] = []
        labels: list[int] = []
        unknown: dict[str, str] = {}
        for row_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) <= max(ix, iy, ic):
                raise LabelError(
                    f"{path}: line {row_no} has {len(row)} columns, fewer than the header; fix that line"
                )
            try:
                x, y = float(row[ix]), float(row[iy])
            except ValueError:
                raise LabelError(
                    f"{path}: line {row_no} has non-numeric coordinates x={row[ix]!r}, y={row[iy]!r}; "
                    "x and y must be numbers (level-0 pixels)"
                ) from None
            _check_inside(path, x, y, f"line {row_no}", slide_size)
            name = row[ic].strip()
            index = lookup.get(name)
            if index is None:
                unknown.setdefault(name, f"line {row_no}")
                continue
            xs.append(x)
            ys.append(y)
            labels.append(index)
    if unknown:
        raise lookup.unknown_error(path, unknown)
    if not labels:
        raise LabelError(f"{path}: no points in the file; add one row x,y,class per labelled point")
    return PointSet(np.array(xs), np.array(ys), np.array(labels, dtype=np.uint8))


def _point_coordinates(
    path: Path, skipped: list[str]
) -> Callable[[Mapping[str, Any], str], list[Any] | None]:
    """The geometry parser of point files: the coordinate list of Point / MultiPoint features."""

    def parse(feature: Mapping[str, Any], where: str) -> list[Any] | None:
        geometry = feature.get("geometry") or {}
        kind = geometry.get("type")
        if kind == "Point":
            return [geometry.get("coordinates")]
        if kind == "MultiPoint":
            coords = geometry.get("coordinates")
            if not isinstance(coords, list):
                raise LabelError(f"{path}: {where} has no coordinate list; export it again from QuPath")
            return coords
        skipped.append(f"{where}: {kind}")
        return None

    return parse


def _read_points_geojson(path: Path, lookup: ClassLookup, slide_size: tuple[int, int] | None) -> PointSet:
    skipped_geometry: list[str] = []
    features = load_geojson_features(path, "points")
    classified, unclassified = classify_features(
        path, features, lookup, _point_coordinates(path, skipped_geometry)
    )
    xs: list[float] = []
    ys: list[float] = []
    labels: list[int] = []
    for item in classified:
        for point in item.geometry:
            try:
                x, y = float(point[0]), float(point[1])
            except (TypeError, ValueError, IndexError):
                raise LabelError(
                    f"{path}: {item.where} has a non-numeric coordinate {point!r}; "
                    "coordinates must be [x, y] numbers"
                ) from None
            _check_inside(path, x, y, item.where, slide_size)
            xs.append(x)
            ys.append(y)
            labels.append(item.class_index)
    if skipped_geometry:
        warnings.warn(
            f"{path}: skipped {len(skipped_geometry)} non-point feature(s) "
            f"({'; '.join(skipped_geometry[:5])})",
            stacklevel=3,
        )
    if unclassified:
        warnings.warn(
            f"{path}: skipped {len(unclassified)} unclassified point feature(s) "
            f"({', '.join(unclassified[:5])}); "
            "give them a class in QuPath to use them",
            stacklevel=3,
        )
    if not labels:
        raise LabelError(
            f"{path}: no classified Point features in the file; in QuPath, add points with the Points tool, "
            "set their class, and export with File > Export objects as GeoJSON"
        )
    return PointSet(np.array(xs), np.array(ys), np.array(labels, dtype=np.uint8))


def read_points(
    path: str | os.PathLike[str], classes: Sequence[str], slide_size: tuple[int, int] | None = None
) -> PointSet:
    """Read grid-point labels from a CSV or QuPath GeoJSON file.

    - CSV (``.csv``, ``.tsv``, ``.txt``): a header naming ``x``, ``y`` and ``class`` (any
      order, case-insensitive, extra columns ignored), one row per point; ``class`` is a
      class name or an integer class index.
    - GeoJSON (other suffixes, e.g. ``.geojson`` / ``.json``, when the file starts with
      ``{`` or ``[``; otherwise it is read as CSV): a FeatureCollection (or a bare
      list of features, as older QuPath exports) of ``Point`` / ``MultiPoint`` features with
      ``properties.classification.name``. Other geometries and unclassified points are
      skipped with a :class:`UserWarning`.

    Class names match exactly, then case-insensitively.

    Args:
        path: The label file.
        classes: Class names in label-index order.
        slide_size: Level-0 ``(width, height)`` of the slide; when given, every point must
            satisfy ``0 <= x < width`` and ``0 <= y < height``.

    Returns:
        The points (level-0 pixels) and their class indices, in file order.

    Raises:
        LabelError: missing/empty file, not a FeatureCollection, unknown class names (all
            listed), non-numeric coordinates, points outside the slide, or no points.
    """
    file = Path(path)
    lookup = ClassLookup(classes)
    if not file.is_file():
        raise LabelError(f"{file}: points file not found; check the 'labels' path in the slide table")
    if file.suffix.lower() in {".csv", ".tsv", ".txt"}:
        return _read_points_csv(file, lookup, slide_size)
    try:
        with open(file, "rb") as handle:
            head = handle.read(256).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as exc:
        raise LabelError(f"{file}: cannot read it ({exc.strerror}); fix the file permissions") from None
    if head and head[:1] not in (b"{", b"["):
        return _read_points_csv(file, lookup, slide_size)  # a CSV with another suffix
    return _read_points_geojson(file, lookup, slide_size)


def write_points_csv(points: PointSet, path: str | os.PathLike[str], classes: Sequence[str]) -> Path:
    """Write points as CSV ``x,y,class`` (class names; coordinates with full float precision).

    Written atomically; :func:`read_points` reads it back exactly.

    Args:
        points: The points (level-0 pixels).
        path: Destination ``.csv`` file.
        classes: Class names in label-index order.

    Returns:
        The written path.
    """
    names = tuple(classes)
    if len(points) and int(points.label.max()) >= len(names):
        raise LabelError(
            f"{path}: point label {int(points.label.max())} has no class name (classes: {', '.join(names)}); "
            "pass the class list the points were made with"
        )
    final = Path(path)
    with atomic_path(final) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["x", "y", "class"])
            for x, y, label in zip(points.x.tolist(), points.y.tolist(), points.label.tolist(), strict=True):
                writer.writerow([repr(float(x)), repr(float(y)), names[label]])
    return final


# --------------------------------------------------------------------------------------------
# Grids and rasterising
# --------------------------------------------------------------------------------------------


def level0_to_mask_index(v: np.ndarray, scale: float) -> np.ndarray:
    """Mask pixel index of level-0 coordinates: ``floor(v / scale)`` (int64).

    Mask pixel ``c`` covers level-0 ``[c * scale, (c + 1) * scale)``.
    """
    return np.floor(np.asarray(v, dtype=np.float64) / float(scale)).astype(np.int64)


def disk_offsets(radius_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the pixels with ``dr**2 + dc**2 <= radius_px**2``."""
    r = int(radius_px)
    dr, dc = np.mgrid[-r : r + 1, -r : r + 1]
    inside = dr**2 + dc**2 <= r * r
    return dr[inside], dc[inside]


def rasterize_points(
    points: PointSet, shape: tuple[int, int], scale: float, radius_px: int = 0
) -> np.ndarray:
    """Draw points into a sparse label mask.

    A point at level-0 ``(x, y)`` falls on mask pixel ``(floor(y / scale), floor(x / scale))``;
    with ``radius_px > 0`` it labels the disk of pixels within ``radius_px`` (mask pixels) of
    that pixel. Where disks of different points overlap the later point wins, but every
    point's own pixel carries its own label (last point wins if two share a pixel). Points
    outside the mask are dropped.

    Args:
        points: The points.
        shape: (H, W) of the mask.
        scale: Level-0 pixels per mask pixel.
        radius_px: Disk radius in mask pixels (0 = a single pixel).

    Returns:
        (H, W) uint8 mask: class index at labelled pixels, 255 elsewhere.
    """
    height, width = (int(shape[0]), int(shape[1]))
    out = np.full((height, width), IGNORE_INDEX, np.uint8)
    flat, values = point_pixels(points, shape, scale, radius_px)
    out.reshape(-1)[flat] = values
    return out


def point_pixels(
    points: PointSet, shape: tuple[int, int], scale: float, radius_px: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels :func:`rasterize_points` labels, without an (H, W) array.

    Returns:
        ``(flat, values)``: ascending unique flat indices ``r * W + c`` and their uint8 classes
        (memory of the points' discs, not of the mask).
    """
    height, width = (int(shape[0]), int(shape[1]))
    if len(points) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8)
    if radius_px < 0:
        raise HistosegError(f"point radius {radius_px} must be >= 0; set the point radius in pixels")
    rows = level0_to_mask_index(points.y, scale)
    cols = level0_to_mask_index(points.x, scale)
    n = len(points)
    order = np.arange(n, dtype=np.int64)
    # Later points win: each pixel takes the highest point index that covers it (disks first,
    # then centres with a higher priority): the last of each pixel's candidates sorted by priority.
    where: list[np.ndarray] = []
    who: list[np.ndarray] = []
    if radius_px > 0:
        dr, dc = disk_offsets(radius_px)
        rr = (rows[:, None] + dr[None, :]).ravel()
        cc = (cols[:, None] + dc[None, :]).ravel()
        owner = np.repeat(order, dr.size)
        ok = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        where.append(rr[ok] * width + cc[ok])
        who.append(owner[ok])
    ok = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    where.append(rows[ok] * width + cols[ok])
    who.append(order[ok] + n)
    flat, priority = np.concatenate(where), np.concatenate(who)
    sort = np.lexsort((priority, flat))
    flat, priority = flat[sort], priority[sort]
    last = np.ones(flat.size, bool)
    last[:-1] = flat[1:] != flat[:-1]
    return flat[last], np.asarray(points.label)[priority[last] % n].astype(np.uint8)


def _points_window(
    record: SlideRecord, slide: Slide, options: GridOptions
) -> tuple[PointSet, tuple[int, int], float, tuple[float, float], int]:
    """The points shifted to their grid, the grid's shape, scale, origin and disc radius."""
    scale = options.mpp / slide.mpp
    width, height = slide.dimensions
    points = read_points(record.labels, options.classes, slide_size=(width, height))  # type: ignore[arg-type]
    margin = options.margin_px
    x0 = max(0.0, float(points.x.min()) - margin * scale)
    y0 = max(0.0, float(points.y.min()) - margin * scale)
    x1 = min(float(width), float(points.x.max()) + (margin + 1) * scale)
    y1 = min(float(height), float(points.y.max()) + (margin + 1) * scale)
    x0 = math.floor(x0 / scale) * scale
    y0 = math.floor(y0 / scale) * scale
    shape = (max(1, math.ceil((y1 - y0) / scale)), max(1, math.ceil((x1 - x0) / scale)))
    shifted = PointSet(x=points.x - x0, y=points.y - y0, label=points.label)
    return shifted, shape, scale, (x0, y0), round(options.point_radius_um / options.mpp)


def points_grid(
    record: SlideRecord, slide: Slide, options: GridOptions
) -> tuple[np.ndarray, tuple[float, float]]:
    """The ``points`` label kind: a slide's grid points as discs on the training grid.

    The grid covers the points' bounding box plus ``options.margin_px`` training pixels (clipped
    to the slide), its origin snapped to a multiple of the training pixel.

    Returns:
        ``(labels, origin)``: (H, W) uint8 labels (255 = unlabelled) and the level-0 ``(x, y)``
        of ``labels[0, 0]``.
    """
    shifted, shape, scale, origin, radius = _points_window(record, slide, options)
    return rasterize_points(shifted, shape, scale, radius_px=radius), origin


def points_sparse(
    record: SlideRecord, slide: Slide, options: GridOptions
) -> tuple[tuple[int, int], np.ndarray, np.ndarray, tuple[float, float]]:
    """The ``points`` label kind as labelled pixels only (:mod:`histoseg.labels.store`).

    The pixels of :func:`points_grid`, on the same grid, without an (H, W) array.

    Returns:
        ``(shape, flat, values, origin)``.
    """
    shifted, shape, scale, origin, radius = _points_window(record, slide, options)
    flat, values = point_pixels(shifted, shape, scale, radius_px=radius)
    return shape, flat, values, origin


__all__ = [
    "PointSet",
    "disk_offsets",
    "level0_to_mask_index",
    "point_pixels",
    "points_grid",
    "points_sparse",
    "rasterize_points",
    "read_points",
    "write_points_csv",
]
