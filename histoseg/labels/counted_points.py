"""Counting-point files: named points, classified or not.

``histoseg sample`` writes each slide's points twice, for the two ways a pathologist classifies
them:

- ``<stem>.points.geojson``: a QuPath FeatureCollection of unclassified, locked point
  annotations named ``p0001``... (QuPath: File > Import objects; classify each point; File >
  Export objects as GeoJSON, into the same folder);
- ``<stem>.points.csv``: ``id,x,y,class`` with the class column empty, to be filled in.

A later round writes ``<stem>.points.round2.geojson`` / ``.csv`` and so on, beside the earlier
files. :func:`read_counted_points` reads any of these back, classified or not: a CSV row with an
empty class, or a GeoJSON point without a classification, is a point still to be classified
(label 255). Each point keeps its name (the ``id`` column, or the feature's
``properties.name``), which is how the estimator finds it in the design record; files without
names (hand-made points) read with names None.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from histoseg.labels.counted_points import read_counted_points, write_counted_points
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> path = write_counted_points(folder / "s.points.csv", ["p0001", "p0002"], np.array([1.5, 8.0]),
    ...                             np.array([2.0, 3.0]), ["a", "b"])
    >>> points = read_counted_points(path, ["a", "b"])
    >>> points.names, points.label.tolist()
    (['p0001', 'p0002'], [255, 255])
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from histoseg import IGNORE_INDEX
from histoseg.errors import LabelError
from histoseg.io.files import atomic_path
from histoseg.labels.annotations import ClassLookup, feature_class_name, feature_label, load_geojson_features

UNCLASSIFIED = IGNORE_INDEX
"""Label of a point that has not been classified yet."""

MARKER = "histoseg sample"
"""``properties.histoseg.written_by`` of the features ``histoseg sample`` writes."""


@dataclass
class CountedPoints:
    """Points from a counting file.

    Attributes:
        names: Point name of each point (``p0001``...), or None where the file has none.
        x: (n,) float64 level-0 x.
        y: (n,) float64 level-0 y.
        label: (n,) uint8 class index (``UNCLASSIFIED`` = 255 when not classified yet).
        source: The file read.
    """

    names: list[str | None]
    x: np.ndarray
    y: np.ndarray
    label: np.ndarray
    source: Path

    def __len__(self) -> int:
        return len(self.names)


def _number(text: Any, path: Path, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise LabelError(f"{path}: {where} has a non-numeric coordinate {text!r}; coordinates are level-0 pixels") from None
    if not math.isfinite(value):
        raise LabelError(f"{path}: {where} has a non-finite coordinate {text!r}; fix or remove that point")
    return value


def _read_csv(path: Path, lookup: ClassLookup) -> CountedPoints:
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise LabelError(f"{path}: cannot read the points file ({exc.strerror}); check the path and permissions") from None
    names: list[str | None] = []
    xs: list[float] = []
    ys: list[float] = []
    labels: list[int] = []
    unknown: dict[str, str] = {}
    with handle:
        try:
            rows = list(csv.reader(handle))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise LabelError(f"{path}: not a readable UTF-8 CSV ({exc}); save it as UTF-8 CSV with header id,x,y,class") from None
    if not rows:
        raise LabelError(f"{path}: the points file is empty; write a CSV with header id,x,y,class")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("x", "y", "class") if c not in header]
    if missing:
        raise LabelError(
            f"{path}: the header {','.join(header)} lacks column(s) {', '.join(missing)}; "
            "the first line must name the columns id,x,y,class"
        )
    ix, iy, ic = header.index("x"), header.index("y"), header.index("class")
    iid = header.index("id") if "id" in header else None
    for row_no, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        where = f"line {row_no}"
        if len(row) <= max(ix, iy, ic, iid or 0):
            raise LabelError(f"{path}: {where} has {len(row)} columns, fewer than the header; fix that line")
        name = row[ic].strip()
        index = UNCLASSIFIED if not name else lookup.get(name)
        if index is None:
            unknown.setdefault(name, where)
            continue
        names.append(row[iid].strip() or None if iid is not None else None)
        xs.append(_number(row[ix], path, where))
        ys.append(_number(row[iy], path, where))
        labels.append(index)
    if unknown:
        raise lookup.unknown_error(path, unknown)
    return CountedPoints(names, np.array(xs, np.float64), np.array(ys, np.float64), np.array(labels, np.uint8), path)


def _read_geojson(path: Path, lookup: ClassLookup) -> CountedPoints:
    names: list[str | None] = []
    xs: list[float] = []
    ys: list[float] = []
    labels: list[int] = []
    unknown: dict[str, str] = {}
    for i, feature in enumerate(load_geojson_features(path, "points")):
        geometry = feature.get("geometry") or {}
        where = feature_label(feature, i)
        kind = geometry.get("type")
        if kind == "Point":
            coords = [geometry.get("coordinates")]
        elif kind == "MultiPoint" and isinstance(geometry.get("coordinates"), list):
            coords = geometry["coordinates"]
        else:
            continue  # outlines and other annotations exported alongside the points
        props = feature.get("properties") or {}
        name = props.get("name") if isinstance(props, dict) else None
        class_name = feature_class_name(feature)
        index = UNCLASSIFIED if class_name is None else lookup.get(class_name)
        if index is None:
            unknown.setdefault(str(class_name), where)
            continue
        for k, point in enumerate(coords):
            if not isinstance(point, (list, tuple)) or len(point) < 2:
                raise LabelError(f"{path}: {where} has a malformed coordinate {point!r}; export it again from QuPath")
            names.append(None if name is None else (str(name) if len(coords) == 1 else f"{name}#{k}"))
            xs.append(_number(point[0], path, where))
            ys.append(_number(point[1], path, where))
            labels.append(index)
    if unknown:
        raise lookup.unknown_error(path, unknown)
    return CountedPoints(names, np.array(xs, np.float64), np.array(ys, np.float64), np.array(labels, np.uint8), path)


def read_counted_points(path: str | os.PathLike[str], classes: Sequence[str]) -> CountedPoints:
    """Read a counting-point file (CSV ``id,x,y,class`` or QuPath GeoJSON), classified or not.

    Args:
        path: The file (``.csv``; anything else is read as GeoJSON).
        classes: Class names in label-index order (names match exactly, then case-insensitively).

    Returns:
        The points in file order; unclassified ones have label 255.

    Raises:
        LabelError: unreadable file, missing columns, non-numeric coordinates, unknown class names.
    """
    file = Path(path)
    if not file.is_file():
        raise LabelError(f"{file}: points file not found; check the --points folder")
    lookup = ClassLookup(classes)
    if file.suffix.lower() == ".csv":
        return _read_csv(file, lookup)
    return _read_geojson(file, lookup)


def write_counted_points(
    path: str | os.PathLike[str],
    names: Sequence[str],
    x: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    labels: np.ndarray | None = None,
) -> Path:
    """Write named points as ``.csv`` (``id,x,y,class``) or QuPath ``.geojson`` (by the suffix).

    GeoJSON points are locked point annotations named by their id, so QuPath shows the id and
    the pathologist cannot move a point by accident; their class is left unset unless
    ``labels`` gives one (255 = unset). Written atomically.
    """
    final = Path(path)
    count = len(names)
    labels = np.full(count, UNCLASSIFIED, np.uint8) if labels is None else np.asarray(labels, np.uint8)
    with atomic_path(final) as tmp:
        if final.suffix.lower() == ".csv":
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(["id", "x", "y", "class"])
                for name, px, py, lab in zip(names, x.tolist(), y.tolist(), labels.tolist(), strict=True):
                    writer.writerow([name, repr(float(px)), repr(float(py)), "" if lab == UNCLASSIFIED else classes[lab]])
        else:
            features = []
            for name, px, py, lab in zip(names, x.tolist(), y.tolist(), labels.tolist(), strict=True):
                props: dict[str, Any] = {
                    "objectType": "annotation",
                    "name": name,
                    "isLocked": True,
                    "histoseg": {"written_by": MARKER, "id": name},
                }
                if lab != UNCLASSIFIED:
                    props["classification"] = {"name": classes[lab]}
                features.append(
                    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [px, py]}, "properties": props}
                )
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump({"type": "FeatureCollection", "features": features}, handle, indent=1)
                handle.write("\n")
    return final


__all__ = ["MARKER", "UNCLASSIFIED", "CountedPoints", "read_counted_points", "write_counted_points"]
