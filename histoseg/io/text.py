"""Text tables as they come from real labs: UTF-8 with or without BOM, UTF-16 and Excel's Windows-1252.

Also the one writer of slide tables (:func:`write_slide_table`), which
:func:`histoseg.labels.table.read_slide_table` reads.

Example:
    >>> from histoseg.io.text import read_table_text
    >>> text, encoding = read_table_text("slides.csv")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from histoseg.errors import ConfigError
from histoseg.io.files import atomic_path

_LOG = logging.getLogger("histoseg")
_FIX = "save it as 'CSV UTF-8' (Excel: File > Save As > CSV UTF-8)"


def decode_table(data: bytes, path: str | os.PathLike[str]) -> tuple[str, str]:
    """Decode a table's bytes; ``(text, encoding name)``.

    UTF-8 (a BOM is dropped) and UTF-16 with a BOM are read as such. Other bytes are read as
    Windows-1252 (what Excel writes as "CSV" on Windows; a superset of Latin-1's printable
    characters), with a warning naming the encoding, or as Latin-1 when Windows-1252 cannot decode
    them. Line ends (LF, CRLF, CR) are left to the CSV reader.

    Raises:
        ConfigError: a binary file (NUL bytes: a spreadsheet, not a CSV).
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not valid UTF-16 text despite its byte-order mark; {_FIX}") from None
    if b"\x00" in data or data.startswith(b"PK\x03\x04"):
        raise ConfigError(f"{path}: a binary file (an Excel .xlsx workbook?), not a CSV text table; {_FIX}")
    try:
        return data.decode("utf-8-sig"), "UTF-8"
    except UnicodeDecodeError as exc:
        where = data[: exc.start].count(b"\n") + 1
        for encoding in ("cp1252", "latin-1"):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                continue
            name = "Windows-1252" if encoding == "cp1252" else "Latin-1"
            _LOG.warning(
                "%s: not UTF-8 (byte 0x%02x on line %d); read as %s. To be sure of the names, %s",
                path,
                data[exc.start],
                where,
                name,
                _FIX,
            )
            return text, name
    raise ConfigError(
        f"{path}: cannot decode the table; {_FIX}"
    )  # pragma: no cover - latin-1 decodes anything


def read_table_text(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Read and decode a text table (see :func:`decode_table`).

    Raises:
        ConfigError: unreadable or binary file.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the table ({exc.strerror}); check the path and permissions"
        ) from None
    return decode_table(data, path)


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a CSV cell as a formula (OWASP, CSV injection)."""


def spreadsheet_safe(value: object) -> object:
    """A CSV cell no spreadsheet runs as a formula: OWASP's CSV-injection defence.

    A text cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
    single quote (``=HYPERLINK(...)`` is written ``'=HYPERLINK(...)``; spreadsheets show the text).
    Numbers are left alone, also as text: ``-0.5`` stays a number (:class:`int`/:class:`float` values are
    never changed, and a text that is a plain number, like ``-3`` or ``+1e-5``, cannot be a formula).

    Example:
        >>> [spreadsheet_safe(v) for v in ("=1+1", "-0.25", -0.25, "a=b")]
        ["'=1+1", '-0.25', -0.25, 'a=b']
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_TRIGGERS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    if value[:1] in ("\t", "\r"):
        return "'" + value
    return value


SLIDE_TABLE_COLUMNS = ("slide", "labels", "kind", "split", "mpp", "label_offset_x", "label_offset_y")
"""The columns :func:`histoseg.labels.table.read_slide_table` reads, in the order they are written."""


def write_slide_table(path: str | os.PathLike[str], rows: Iterable[Mapping[str, object]]) -> Path:
    """Write a slide table CSV atomically: the one writer of the tables ``read_slide_table`` reads.

    Columns: those of :data:`SLIDE_TABLE_COLUMNS` that the rows have, in that order, then any
    other keys (ignored by the reader: statistics, seeds) in the order the first rows give them.
    ``None`` is written as an empty cell (``mpp``: the slide's metadata).

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
        >>> _ = write_slide_table(path, [{"split": "val", "slide": "a.tif", "mpp": None, "seed": 3}])
        >>> path.read_text().splitlines()
        ['slide,split,mpp,seed', 'a.tif,val,,3']
    """
    rows = list(rows)
    keys = list(dict.fromkeys(key for row in rows for key in row))
    columns = [c for c in SLIDE_TABLE_COLUMNS if c in keys]
    columns += [k for k in keys if k not in SLIDE_TABLE_COLUMNS]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([["" if row.get(c) is None else row[c] for c in columns] for row in rows])
    return Path(path)
