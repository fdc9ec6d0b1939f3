r"""The slide table: which slides there are, where their labels are, their kind and split.

Slide table columns (CSV, header required; paths relative to the CSV's folder):
``slide`` (required), ``labels`` (mask / points / scribbles file, may be empty), ``kind``
(a label kind of :mod:`histoseg.labels.grid` — ``dense`` | ``points`` | ``scribbles`` — or
``none``; default: ``dense`` when labels are given), ``split`` (``train`` | ``val`` | ``test`` |
``predict``; default ``train``), ``mpp`` (level-0 mpp override), ``label_offset_x``,
``label_offset_y`` (level-0 position of a dense mask).

Example:
    >>> import pathlib, tempfile
    >>> from histoseg.labels.table import read_slide_table
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "t.csv").write_text("slide,labels,kind,split\na.tif,a.geojson,points,val\n")
    >>> row = read_slide_table(folder / "t.csv")[0]
    >>> row.slide.name, row.labels.name, row.kind, row.split
    ('a.tif', 'a.geojson', 'points', 'val')
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from histoseg.errors import ConfigError
from histoseg.io.slide import check_mpp
from histoseg.io.text import read_table_text
from histoseg.labels.grid import label_kinds
from histoseg.labels.types import SlideRecord

SPLITS = ("train", "val", "test", "predict")
"""The splits a slide table row may name."""


def _float_or_none(value: str | None, where: str) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a number; fix the slide table") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}: {value!r} is not a finite number; fix the slide table")
    return number


def _table_mpp(value: str | None, where: str) -> float | None:
    """The ``mpp`` cell: empty (use the slide's metadata) or a plausible resolution (see ``check_mpp``)."""
    number = _float_or_none(value, where)
    return None if number is None else check_mpp(number, f"{where}: mpp")


def read_slide_table(path: str | os.PathLike[str]) -> list[SlideRecord]:
    """Read a slide table CSV (see the module docstring for its columns).

    Returns:
        The rows, in file order, with paths resolved against the table's folder.

    Raises:
        ConfigError: missing file or ``slide`` column, unknown kind or split, bad numbers.
    """
    kinds = (*label_kinds(), "none")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: slide table not found; set data.slides to a CSV with a 'slide' column")
    base = path.parent
    records: list[SlideRecord] = []
    text, _ = read_table_text(path)
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "slide" not in reader.fieldnames:
            raise ConfigError(
                f"{path}: slide table needs a header with a 'slide' column (and optionally labels, kind, split, mpp)"
            )
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            slide = (row.get("slide") or "").strip()
            if not slide:
                raise ConfigError(f"{where}: empty 'slide' value; give a slide path or remove the row")
            labels = (row.get("labels") or "").strip()
            kind = (row.get("kind") or "").strip() or ("dense" if labels else "none")
            if kind not in kinds:
                raise ConfigError(f"{where}: kind {kind!r} must be {', '.join(kinds[:-1])} or {kinds[-1]}")
            split = (row.get("split") or "").strip() or "train"
            if split not in SPLITS:
                raise ConfigError(f"{where}: split {split!r} must be one of {', '.join(SPLITS)}")
            ox = _float_or_none(row.get("label_offset_x"), where) or 0.0
            oy = _float_or_none(row.get("label_offset_y"), where) or 0.0
            records.append(
                SlideRecord(
                    slide=(base / slide).resolve() if not os.path.isabs(slide) else Path(slide),
                    labels=((base / labels).resolve() if not os.path.isabs(labels) else Path(labels))
                    if labels
                    else None,
                    kind=kind,
                    split=split,
                    mpp=_table_mpp(row.get("mpp"), f"{where} ({slide})"),
                    label_offset=(int(ox), int(oy)),
                )
            )
    if not records:
        raise ConfigError(f"{path}: slide table has no rows; add at least one slide")
    return records


__all__ = ["SPLITS", "SlideRecord", "read_slide_table"]
