"""Ownership records: whether a JSON file is one histoseg wrote, by typed fields at fixed places.

Every command that may overwrite its own earlier output (``quantify``'s ``report.json`` and result
files, ``corrections``' labels) names the fields its files carry; a file is histoseg's only when it
has them, each of its type (:func:`has_record`), so a user's file that merely contains a marker
string is never overwritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

FieldSpec = type | tuple[type, ...] | Mapping[str, "FieldSpec"]
"""The type a field of an ownership record must have: a type, one of several types, or a nested record."""


def has_record(data: Any, fields: Mapping[str, FieldSpec]) -> bool:
    """Whether parsed JSON holds an ownership record: a top-level object with every field, each of its type.

    The check is structural: a field must sit at its fixed place (a key of the top-level object, or
    of a nested record) and have its type; a user's file that merely *contains* a marker string (as
    a value, a list item or inside a text) never passes. ``bool`` never counts as a number, and
    ``float`` accepts integers (JSON does not distinguish ``1`` from ``1.0``).

    Example:
        >>> spec = {"histoseg_corrections": {"predicted": str, "tolerance": float}}
        >>> has_record({"histoseg_corrections": {"predicted": "a.geojson", "tolerance": 0.5}}, spec)
        True
        >>> has_record(["histoseg_corrections"], spec), has_record({"histoseg_corrections": "yes"}, spec)
        (False, False)
    """
    if not isinstance(data, dict):
        return False
    for key, spec in fields.items():
        if key not in data:
            return False
        value = data[key]
        if isinstance(spec, Mapping):
            if not has_record(value, spec):
                return False
            continue
        kinds = spec if isinstance(spec, tuple) else (spec,)
        if float in kinds:
            kinds = (*kinds, int)
        if isinstance(value, bool) and bool not in kinds:
            return False
        if not isinstance(value, kinds):
            return False
    return True


def is_owned_json(path: str | os.PathLike[str], fields: Mapping[str, FieldSpec]) -> bool:
    """Whether the file at ``path`` is JSON holding histoseg's ownership record (:func:`has_record`).

    Never raises: a missing, unreadable or non-JSON file is not histoseg's.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return False
    return has_record(data, fields)


__all__ = ["FieldSpec", "has_record", "is_owned_json"]
