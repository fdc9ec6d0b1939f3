"""Reading QuPath GeoJSON annotations: the one feature reader and class lookup of every label kind.

Points (:mod:`histoseg.labels.points`) and scribbles (:mod:`histoseg.labels.scribbles`) both read
a QuPath GeoJSON export with :func:`load_geojson_features`, name each feature with
:func:`feature_label`, and map its ``properties.classification.name`` to a class index with
:func:`classify_features` (through :class:`ClassLookup`), so the same file gives the same classes
and the same unknown-class error whichever kind reads it.

Example:
    >>> from histoseg.labels.annotations import ClassLookup
    >>> lookup = ClassLookup(("background", "interstitium", "tubules"))
    >>> lookup.get("Tubules"), lookup.get("1"), lookup.get("cortex")
    (2, 1, None)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from histoseg import IGNORE_INDEX
from histoseg.errors import HistosegError, LabelError

T = TypeVar("T")


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
        if len(self.classes) > IGNORE_INDEX:
            raise HistosegError(
                f"classes: at most {IGNORE_INDEX} classes fit a uint8 label mask ({IGNORE_INDEX} = unlabelled)"
            )
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
    features: Any
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


GEOMETRY_NESTING = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}
"""GeoJSON geometry types (RFC 7946) and how many list levels hold their positions."""


def check_geometry(geometry: Any, where: str) -> None:
    """Check a GeoJSON geometry before a geometry library sees it (shapely raises on bad input).

    A geometry is None (no geometry), a ``GeometryCollection`` of geometries, or one of
    :data:`GEOMETRY_NESTING` whose ``coordinates`` nest positions of 2 or 3 finite numbers.
    Empty lists are allowed (an empty geometry).

    Args:
        geometry: The feature's ``geometry`` value.
        where: The file and feature, for the message (``"b.geojson: feature 3"``).

    Raises:
        LabelError: naming the feature, the geometry type and what is wrong.
    """
    fix = "fix or delete that annotation in QuPath and export again"
    if geometry is None:
        return
    if not isinstance(geometry, Mapping):
        raise LabelError(f"{where}: geometry is a {type(geometry).__name__}, not a GeoJSON geometry; {fix}")
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        parts = geometry.get("geometries")
        if not isinstance(parts, list):
            raise LabelError(f"{where}: GeometryCollection without a 'geometries' list; {fix}")
        for part in parts:
            if part is None:
                raise LabelError(f"{where}: GeometryCollection holds a null geometry; {fix}")
            check_geometry(part, where)
        return
    if kind not in GEOMETRY_NESTING:
        known = ", ".join([*GEOMETRY_NESTING, "GeometryCollection"])
        raise LabelError(f"{where}: unknown geometry type {kind!r} (GeoJSON has {known}); {fix}")

    def positions(value: Any, depth: int) -> None:
        if depth == 0:
            if not isinstance(value, list):
                raise LabelError(
                    f"{where}: {kind} coordinates are not nested as GeoJSON {kind} coordinates "
                    f"({value!r:.40} where a position [x, y] belongs); {fix}"
                )
            numbers = value
            if not 2 <= len(numbers) <= 3:
                raise LabelError(f"{where}: {kind} has a position {value!r:.60} that is not [x, y]; {fix}")
            for number in numbers:
                if isinstance(number, bool) or not isinstance(number, (int, float)):
                    raise LabelError(
                        f"{where}: {kind} has a coordinate {number!r:.40} that is not a number; {fix}"
                    )
                if not math.isfinite(number):
                    raise LabelError(
                        f"{where}: {kind} has a coordinate {number} (not a finite number); {fix}"
                    )
            return
        if not isinstance(value, list):
            raise LabelError(
                f"{where}: {kind} coordinates are not nested as GeoJSON {kind} coordinates; {fix}"
            )
        for item in value:
            positions(item, depth - 1)

    if "coordinates" not in geometry:
        raise LabelError(f"{where}: {kind} without 'coordinates'; {fix}")
    positions(geometry["coordinates"], GEOMETRY_NESTING[kind])


@dataclass(frozen=True)
class ClassifiedFeature(Generic[T]):
    """A GeoJSON feature whose geometry its reader accepted and whose class is known.

    Attributes:
        class_index: Index of the feature's class.
        where: Human name of the feature for messages (:func:`feature_label`).
        geometry: What the reader's ``parse`` made of the feature's geometry.
    """

    class_index: int
    where: str
    geometry: T


def classify_features(
    path: str | os.PathLike[str],
    features: Sequence[Mapping[str, Any]],
    lookup: ClassLookup,
    parse: Callable[[Mapping[str, Any], str], T | None],
) -> tuple[list[ClassifiedFeature[T]], list[str]]:
    """Give each feature its class, in file order: the one class-lookup loop of every reader.

    For each feature, ``parse(feature, where)`` first reads its geometry (returning None skips
    the feature; the reader records why), then its class name is looked up. Unknown class names
    are collected over the whole file and raised together.

    Args:
        path: The label file (for messages).
        features: The features (:func:`load_geojson_features`).
        lookup: The class lookup.
        parse: Reads a feature's geometry; None = not this reader's geometry.

    Returns:
        ``(classified, unclassified)``: the accepted features with their class, and the names
        (:func:`feature_label`) of accepted features that have no class.

    Raises:
        LabelError: unknown class names (all listed with the known classes).
    """
    classified: list[ClassifiedFeature[T]] = []
    unclassified: list[str] = []
    unknown: dict[str, str] = {}
    for i, feature in enumerate(features):
        where = feature_label(feature, i)
        geometry = parse(feature, where)
        if geometry is None:
            continue
        name = feature_class_name(feature)
        if name is None:
            unclassified.append(where)
            continue
        index = lookup.get(name)
        if index is None:
            unknown.setdefault(name, where)
            continue
        classified.append(ClassifiedFeature(index, where, geometry))
    if unknown:
        raise lookup.unknown_error(path, unknown)
    return classified, unclassified


__all__ = [
    "ClassLookup",
    "ClassifiedFeature",
    "check_geometry",
    "classify_features",
    "feature_class_name",
    "feature_label",
    "load_geojson_features",
]
