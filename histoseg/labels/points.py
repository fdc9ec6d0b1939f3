"""Grid-point labels: reading, drawing from dense masks, rasterising and writing.

Pathologists label a slide for stereology by giving a class to each point of a regular
grid (METHODS.md section 4). This module owns those labels:

- :class:`PointSet` — points in **level-0 pixels** ``(x, y)`` with a uint8 class index each;
- :func:`read_points` — a CSV file (header ``x,y,class``) or a QuPath GeoJSON export of
  Point / MultiPoint annotations (``properties.classification.name``);
- :func:`grid_points_from_mask` — a regular grid drawn over a dense label mask (experiments);
- :func:`rasterize_points` — points into a sparse uint8 label mask (255 = unlabelled);
- :func:`write_points_csv` — the CSV form, written atomically.

Point counting (area fractions with Wilson intervals) is report arithmetic and lives in
:mod:`histoseg.report.point_counts`. The GeoJSON helpers (:func:`load_geojson_features`, :class:`ClassLookup`) are shared with
:mod:`histoseg.labels.scribbles`.

Example:
    >>> import numpy as np
    >>> from histoseg.labels.points import grid_points_from_mask, rasterize_points
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
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from histoseg.errors import HistosegError, LabelError
from histoseg.io.files import atomic_path

IGNORE = 255


# --------------------------------------------------------------------------------------------
# Shared label-file helpers (also used by histoseg.labels.scribbles)
# --------------------------------------------------------------------------------------------


class ClassLookup:
    """Map class names (or integer indices as text) from a label file to class indices.

    Names match exactly first, then case-insensitively (QuPath's ``Tubules`` matches the
    configured ``tubules``). A string of digits that is not a class name is read as a class
    index and must be in ``range(len(classes))``.

    Args:
        classes: Class names in label-index order, e.g. ``histoseg.KIDNEY_CLASSES``.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = tuple(str(c) for c in classes)
        if not self.classes:
            raise HistosegError("classes: the class list is empty; configure the class names of the model")
        if len(self.classes) > 255:
            raise HistosegError("classes: at most 255 classes fit a uint8 label mask (255 = unlabelled)")
        self._exact = {name: i for i, name in enumerate(self.classes)}
        self._folded: dict[str, int] = {}
        for i, name in enumerate(self.classes):
            self._folded.setdefault(name.casefold(), i)

    def get(self, name: Any) -> int | None:
        """Return the class index of ``name`` (str or int), or None when it is unknown."""
        if isinstance(name, bool):
            return None
        if isinstance(name, (int, np.integer)):
            return int(name) if 0 <= int(name) < len(self.classes) else None
        text = str(name).strip()
        if text in self._exact:
            return self._exact[text]
        if text.casefold() in self._folded:
            return self._folded[text.casefold()]
        if text.isdigit() and int(text) < len(self.classes):
            return int(text)
        return None

    def unknown_error(self, path: str | os.PathLike[str], unknown: Mapping[str, str]) -> LabelError:
        """Build the one-line error for unknown class names.

        Args:
            path: The label file.
            unknown: Unknown name -> where it first occurs (e.g. ``"row 3"``).
        """
        listed = ", ".join(f"'{name}' ({where})" for name, where in list(unknown.items())[:8])
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        return LabelError(
            f"{path}: unknown class name(s) {listed}{more}; known classes are "
            f"{', '.join(self.classes)} (or their indices 0-{len(self.classes) - 1}); "
            "rename the classes in the label file or set the model's classes to match"
        )


def load_geojson_features(path: str | os.PathLike[str], what: str = "labels") -> list[dict[str, Any]]:
    """Read the features of a (QuPath) GeoJSON file.

    Accepts a ``FeatureCollection``, a bare list of features (older QuPath exports) or a
    single ``Feature``.

    Args:
        path: The GeoJSON file.
        what: What the file holds, for error messages (``"points"``, ``"scribbles"``).

    Returns:
        The feature dicts, in file order.

    Raises:
        LabelError: missing or unreadable file, invalid JSON, or not a FeatureCollection.
    """
    file = Path(path)
    if not file.is_file():
        raise LabelError(f"{file}: {what} file not found; check the path in the slide table")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(
            f"{file}: cannot read the {what} file ({exc}); export it again as UTF-8 GeoJSON"
        ) from None
    if not text.strip():
        raise LabelError(f"{file}: the {what} file is empty; export the annotations from QuPath as GeoJSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelError(
            f"{file}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); "
            "export the annotations from QuPath again (File > Export objects as GeoJSON)"
        ) from None
    if isinstance(data, list):
        features = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise LabelError(
                f"{file}: the FeatureCollection has no 'features' list; export it again from QuPath"
            )
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    else:
        kind = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise LabelError(
            f"{file}: not a GeoJSON FeatureCollection (top-level type is {kind!r}); "
            "export the annotations with QuPath's File > Export objects as GeoJSON"
        )
    for i, feature in enumerate(features):
        if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), (dict, type(None))):
            raise LabelError(
                f"{file}: feature {i} is not a GeoJSON Feature with a 'geometry'; "
                "export the annotations again from QuPath"
            )
    return features


def feature_class_name(feature: Mapping[str, Any]) -> str | None:
    """Return a feature's QuPath class name (``properties.classification.name``) or None."""
    props = feature.get("properties") or {}
    if not isinstance(props, Mapping):
        return None
    cls = props.get("classification")
    if isinstance(cls, Mapping):
        name = cls.get("name")
        if name is None and isinstance(cls.get("names"), list) and cls["names"]:
            name = ": ".join(str(n) for n in cls["names"])  # QuPath derived classes
        return None if name is None else str(name)
    if isinstance(cls, (str, int)) and not isinstance(cls, bool):
        return str(cls)
    return None


def feature_label(feature: Mapping[str, Any], index: int) -> str:
    """Human name of a feature for messages: ``feature 3 ('name')`` or ``feature 3 (id ...)``."""
    props = feature.get("properties") or {}
    name = props.get("name") if isinstance(props, Mapping) else None
    if name:
        return f"feature {index} ('{name}')"
    if feature.get("id") is not None:
        return f"feature {index} (id {feature['id']})"
    return f"feature {index}"


# --------------------------------------------------------------------------------------------
# Point sets
# --------------------------------------------------------------------------------------------


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


def _read_points_geojson(path: Path, lookup: ClassLookup, slide_size: tuple[int, int] | None) -> PointSet:
    features = load_geojson_features(path, "points")
    xs: list[float] = []
    ys: list[float] = []
    labels: list[int] = []
    unknown: dict[str, str] = {}
    skipped_geometry: list[str] = []
    unclassified: list[str] = []
    for i, feature in enumerate(features):
        geometry = feature.get("geometry") or {}
        kind = geometry.get("type")
        where = feature_label(feature, i)
        if kind == "Point":
            coords = [geometry.get("coordinates")]
        elif kind == "MultiPoint":
            coords = geometry.get("coordinates")
        else:
            skipped_geometry.append(f"{where}: {kind}")
            continue
        name = feature_class_name(feature)
        if name is None:
            unclassified.append(where)
            continue
        index = lookup.get(name)
        if index is None:
            unknown.setdefault(name, where)
            continue
        if not isinstance(coords, list):
            raise LabelError(f"{path}: {where} has no coordinate list; export it again from QuPath")
        for point in coords:
            try:
                x, y = float(point[0]), float(point[1])
            except (TypeError, ValueError, IndexError):
                raise LabelError(
                    f"{path}: {where} has a non-numeric coordinate {point!r}; "
                    "coordinates must be [x, y] numbers"
                ) from None
            _check_inside(path, x, y, where, slide_size)
            xs.append(x)
            ys.append(y)
            labels.append(index)
    if unknown:
        raise lookup.unknown_error(path, unknown)
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


def grid_points_from_mask(
    mask: np.ndarray,
    spacing_px: float,
    *,
    offset: float | None = None,
    scale: float = 1.0,
    ignore: Iterable[int] = (IGNORE,),
) -> PointSet:
    """Labelled points on a regular square grid over a dense label mask.

    Grid positions in **mask pixels** are ``u = offset + i * spacing_px`` (columns) and
    ``v = offset + j * spacing_px`` (rows) for all ``u < W``, ``v < H``; a point gets the label
    of the mask pixel that contains it and is returned at level-0 ``(u * scale, v * scale)``.
    With the default offset ``spacing_px / 2`` the points sit at the centres of the grid
    cells. Points on pixels whose label is in ``ignore`` are dropped. The label is looked up
    with the same rule as :func:`rasterize_points` (``floor(level0 / scale)``), so rasterising
    the result at ``scale`` puts each point back on the pixel it was read from.

    Args:
        mask: (H, W) uint8 dense label mask.
        spacing_px: Grid spacing in mask pixels (``spacing_um / mask_mpp``), > 0.
        offset: Position of the first grid line in mask pixels (default ``spacing_px / 2``).
        scale: Level-0 pixels per mask pixel (``mask_mpp / slide_mpp``).
        ignore: Label values that make no point.

    Returns:
        The points in row-major order (level-0 pixels).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"grid_points_from_mask: mask must be (H, W), got shape {mask.shape}")
    if not spacing_px > 0 or not scale > 0:
        raise HistosegError(
            f"grid spacing ({spacing_px}) and scale ({scale}) must be > 0; set a positive grid spacing"
        )
    start = spacing_px / 2.0 if offset is None else float(offset)
    height, width = mask.shape
    us = start + spacing_px * np.arange(max(0, math.ceil((width - start) / spacing_px)))
    vs = start + spacing_px * np.arange(max(0, math.ceil((height - start) / spacing_px)))
    us = us[(us >= 0) & (us < width)]
    vs = vs[(vs >= 0) & (vs < height)]
    vv, uu = np.meshgrid(vs, us, indexing="ij")
    x = (uu * scale).ravel()
    y = (vv * scale).ravel()
    cols = np.clip(level0_to_mask_index(x, scale), 0, width - 1)
    rows = np.clip(level0_to_mask_index(y, scale), 0, height - 1)
    labels = mask[rows, cols]
    keep = ~np.isin(labels, np.asarray(list(ignore)))
    return PointSet(x[keep], y[keep], labels[keep].astype(np.uint8))


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
    out = np.full((height, width), IGNORE, np.uint8)
    if len(points) == 0:
        return out
    if radius_px < 0:
        raise HistosegError(f"point radius {radius_px} must be >= 0; set the point radius in pixels")
    rows = level0_to_mask_index(points.y, scale)
    cols = level0_to_mask_index(points.x, scale)
    n = len(points)
    order = np.arange(n, dtype=np.int64)
    # Later points win: each pixel takes the highest point index that covers it (disks first,
    # then centres with a higher priority), computed with np.maximum.at (deterministic).
    owner = np.full(height * width, -1, np.int64)
    if radius_px > 0:
        dr, dc = disk_offsets(radius_px)
        rr = (rows[:, None] + dr[None, :]).ravel()
        cc = (cols[:, None] + dc[None, :]).ravel()
        who = np.repeat(order, dr.size)
        ok = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        np.maximum.at(owner, rr[ok] * width + cc[ok], who[ok])
    ok = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    np.maximum.at(owner, rows[ok] * width + cols[ok], order[ok] + n)
    hit = owner >= 0
    out.ravel()[hit] = points.label[owner[hit] % n]
    return out


__all__ = [
    "ClassLookup",
    "PointSet",
    "feature_class_name",
    "grid_points_from_mask",
    "load_geojson_features",
    "rasterize_points",
    "read_points",
    "write_points_csv",
]
