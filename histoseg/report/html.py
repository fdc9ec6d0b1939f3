"""The cohort report as one static web page: ``OUT/index.html``.

:func:`write_html_report` renders the per-slide results of a quantify run (the dicts of the
``.<stem>.result.json`` files) into a self-contained page that opens from disk: no server, no
network, no external scripts, styles or fonts. It shows

- the cohort table, one row per slide (sortable by clicking a column header): a thumbnail, the
  status, the interstitial fraction and every interval the run has (any ``*_lo/*_hi``,
  ``*_low/*_high``, ``*_ci_low/*_ci_high`` pair or ``*_ci = [lo, hi]`` value, e.g. the
  point-count Wilson interval), per-class fraction of tissue and area, the mpp source and, for a
  failed slide, the reason;
- the cohort plot ``cohort.png``;
- per slide: the overlay ``<stem>.overlay.png``, links to its label map, GeoJSON and result file,
  and its report rows (one per class, every column);
- the run's settings (checkpoint hash, mpp sources, precision when recorded, package versions).

Every string from the user's data (slide names, paths, errors) is HTML-escaped; file links are
URL-quoted relative links. The page is written atomically and rebuilt on every run (also a resume).
A script sets ``data-rows`` (table rows) and ``data-images-ok`` (``loaded/total``) on ``<html>``
after the page loads, so a headless browser can check it (``tests/test_html_report.py``).

Example:
    >>> from histoseg.report.html import render_html
    >>> page = render_html([{"slide": "<a>.svs", "stem": "a", "status": "failed", "error": "truncated"}])
    >>> "&lt;a&gt;.svs" in page and "<a>.svs" not in page
    True
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from histoseg import __version__
from histoseg.io.files import atomic_path
from histoseg.report.areas import INTERSTITIAL_FRACTION_DEFINITION

__all__ = ["find_intervals", "render_html", "write_html_report"]

_PAIRS = (("_ci_low", "_ci_high"), ("_ci_lo", "_ci_hi"), ("_low", "_high"), ("_lo", "_hi"))

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:1.2em 2em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ccc}
.sub{color:#666;margin-top:0} table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right;vertical-align:middle}
th{background:#f3f3f3;position:sticky;top:0} td.t,th.t{text-align:left}
#cohort th{cursor:pointer;user-select:none} #cohort th[aria-sort=ascending]::after{content:" \\25B2"}
#cohort th[aria-sort=descending]::after{content:" \\25BC"} tr.failed td{background:#fdecea}
.err{color:#b00020;text-align:left;min-width:12em;max-width:22em;font-size:.9em} img.thumb{height:64px;display:block}
.wide{overflow-x:auto;max-width:100%}
.slide{margin:1.4em 0;padding-top:.4em;border-top:1px dashed #ccc} .slide img{max-width:100%;height:auto}
.links a{margin-right:1em} dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600} dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
.note{color:#555;font-size:.9em;max-width:60em}
"""

_SCRIPT = """
(function(){
  function key(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent;
    var n=parseFloat(v);return (v!==''&&!isNaN(n)&&isFinite(v))?[0,n]:[1,v.toLowerCase()];}
  function cmp(a,b){if(a[0]!==b[0])return a[0]-b[0];return a[1]<b[1]?-1:a[1]>b[1]?1:0;}
  var table=document.getElementById('cohort');
  if(table){var heads=table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads,function(th,i){th.addEventListener('click',function(){
      var asc=th.getAttribute('aria-sort')!=='ascending';
      Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',asc?'ascending':'descending');
      var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(r,s){var c=cmp(key(r.cells[i]),key(s.cells[i]));return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});});});}
  window.addEventListener('load',function(){
    var imgs=document.images,ok=0;
    for(var j=0;j<imgs.length;j++){if(imgs[j].complete&&imgs[j].naturalWidth>0)ok++;}
    var root=document.documentElement;
    root.setAttribute('data-images-ok',ok+'/'+imgs.length);
    root.setAttribute('data-rows',table?String(table.tBodies[0].rows.length):'0');});
})();
"""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np

            if isinstance(value, (np.integer, np.floating)):
                value = float(value)
            else:
                return None
        except ImportError:  # pragma: no cover
            return None
    value = float(value)
    return value if math.isfinite(value) else None


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars and 2-lists of ``mapping`` and of its nested dicts (keys joined with ``.``)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and key not in ("key", "settings", "geojson", "outputs"):
            flat.update(_flatten(value, f"{name}."))
        elif not isinstance(value, (Mapping, list, tuple)) or (
            isinstance(value, (list, tuple)) and len(value) == 2
        ):
            flat[name] = value
    return flat


def find_intervals(mapping: Mapping[str, Any]) -> list[tuple[str, str | None, str, str]]:
    """The intervals among ``mapping``'s keys, generically.

    An interval is a pair of keys ``P<lo>``/``P<hi>`` for the suffix pairs ``_ci_low/_ci_high``,
    ``_ci_lo/_ci_hi``, ``_low/_high``, ``_lo/_hi``, or a key ``P_ci`` holding ``[lo, hi]`` (given
    as ``P_ci[0]``/``P_ci[1]``). Its estimate is the first present of ``P``, ``P_fraction``,
    ``P_mean``.

    Returns:
        ``(name, estimate key or None, lo key, hi key)`` per interval, in key order.
    """
    found: list[tuple[str, str | None, str, str]] = []
    used: set[str] = set()
    for key in mapping:
        if key in used:
            continue
        for lo_suffix, hi_suffix in _PAIRS:
            if key.endswith(lo_suffix) and key[: -len(lo_suffix)] + hi_suffix in mapping:
                prefix = key[: -len(lo_suffix)]
                estimate = next(
                    (k for k in (prefix, f"{prefix}_fraction", f"{prefix}_mean") if k in mapping), None
                )
                found.append((prefix, estimate, key, prefix + hi_suffix))
                used.update((key, prefix + hi_suffix))
                break
        else:
            value = mapping[key]
            if key.endswith("_ci") and isinstance(value, (list, tuple)) and len(value) == 2:
                prefix = key[:-3]
                estimate = prefix if prefix in mapping else None
                found.append((prefix, estimate, f"{key}[0]", f"{key}[1]"))
    return found


def _get(mapping: Mapping[str, Any], key: str | None) -> Any:
    if key is None:
        return None
    if key.endswith(("[0]", "[1]")):
        value = mapping.get(key[:-3])
        return value[int(key[-2])] if isinstance(value, (list, tuple)) else None
    return mapping.get(key)


def _fmt(value: Any, kind: str = "auto") -> str:
    number = _number(value)
    if number is None:
        return "" if value is None or _number_like_nan(value) else str(value)
    if kind == "percent":
        return f"{100 * number:.1f} %"
    if float(number).is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.4g}"


def _number_like_nan(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _interval_text(mapping: Mapping[str, Any], interval: tuple[str, str | None, str, str], kind: str) -> str:
    _, estimate, lo, hi = interval
    low, high = _number(_get(mapping, lo)), _number(_get(mapping, hi))
    if low is None or high is None:
        return ""
    head = _fmt(_get(mapping, estimate), kind) if estimate else ""
    return f"{head} [{_fmt(low, kind)}, {_fmt(high, kind)}]".strip()


def _cell(text: str, sort: Any = None, cls: str = "") -> str:
    value = _number(sort)
    attr = f' data-v="{value!r}"' if value is not None else (f' data-v="{escape(str(sort))}"' if sort else "")
    klass = f' class="{cls}"' if cls else ""
    return f"<td{klass}{attr}>{text}</td>"


def _href(name: str) -> str:
    return escape(quote(name), quote=True)


def _thumbnail(path: Path, height: int = 64) -> str | None:
    """A small PNG preview of an image file as a ``data:`` URI (None when unreadable)."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((height * 6, height))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=True)
    except (OSError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _class_names(results: Sequence[Mapping[str, Any]], classes: Sequence[str] | None) -> list[str]:
    names = list(classes or [])
    for result in results:
        for row in result.get("rows") or []:
            if str(row.get("class")) not in names:
                names.append(str(row.get("class")))
    return names


def _cohort_table(
    results: Sequence[Mapping[str, Any]], out_dir: Path | None, classes: Sequence[str], background: str
) -> str:
    flats = [_flatten({k: v for k, v in r.items() if k != "rows"}) for r in results]
    intervals: dict[str, tuple[str, str | None, str, str]] = {}
    for flat in flats:
        for interval in find_intervals(flat):
            intervals.setdefault(interval[0], interval)
    shown = [c for c in classes if c != background]
    heads = ["", "slide", "status", "error", "interstitial fraction"]
    heads += [f"{name.replace('.', ' ').replace('_', ' ')} [interval]" for name in intervals]
    heads += [f"{c} % of tissue" for c in shown] + [f"{c} mm²" for c in shown]
    heads += ["tissue mm²", "mpp (source)"]
    body = []
    for result, flat in zip(results, flats, strict=True):
        stem = str(result.get("stem", ""))
        ok = result.get("status") == "ok"
        thumb = _thumbnail(out_dir / f"{stem}.overlay.png") if out_dir is not None and ok else None
        cells = [_cell(f'<img class="thumb" alt="" src="{thumb}">' if thumb else "", cls="t")]
        name = escape(str(result.get("slide", "")))
        cells.append(_cell(f'<a href="#slide-{_href(stem)}">{name}</a>', str(result.get("slide", "")), "t"))
        cells.append(_cell(escape(str(result.get("status", ""))), str(result.get("status", "")), "t"))
        cells.append(_cell(escape(str(result.get("error") or "")), cls="err"))
        value = result.get("interstitial_fraction")
        cells.append(_cell(_fmt(value, "percent"), value))
        for interval in intervals.values():
            estimate = _get(flat, interval[1]) if interval[1] else _get(flat, interval[2])
            cells.append(_cell(escape(_interval_text(flat, interval, "percent")), estimate))
        by_class = {str(r.get("class")): r for r in result.get("rows") or []}
        for key, kind in (("fraction_of_tissue", "percent"), ("area_mm2", "auto")):
            for c in shown:
                value = by_class.get(c, {}).get(key)
                cells.append(_cell(_fmt(value, kind), value))
        tissue = sum(_number(by_class[c].get("area_mm2")) or 0.0 for c in shown if c in by_class)
        cells.append(_cell(_fmt(tissue) if by_class else "", tissue if by_class else None))
        mpp = f"{_fmt(result.get('mpp'))} ({result.get('mpp_source', '')})" if ok else ""
        cells.append(_cell(escape(mpp), result.get("mpp")))
        body.append(f'<tr class="{"ok" if ok else "failed"}">' + "".join(cells) + "</tr>")
    head = "".join(f'<th class="t" title="click to sort">{escape(h)}</th>' for h in heads)
    table = f'<table id="cohort"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    return f'<div class="wide">{table}</div>'


def _rows_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One slide's report rows, every column; intervals shown as ``estimate [lo, hi]``."""
    if not rows:
        return ""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    intervals = find_intervals(dict.fromkeys(keys, 0))
    merged = {k for iv in intervals for k in iv[1:] if k}
    columns: list[tuple[str, Any]] = []
    for key in keys:
        interval = next((iv for iv in intervals if key in iv[1:]), None)
        if interval is not None and all(c[0] != interval[0] for c in columns):
            columns.append((interval[0], interval))
        elif key not in merged:
            columns.append((key, None))
    head = "".join(f'<th class="t">{escape(name)}</th>' for name, _ in columns)
    body = []
    for row in rows:
        cells = [
            f"<td>{escape(_interval_text(row, iv, 'auto') if iv else _fmt(row.get(name)))}</td>"
            for name, iv in columns
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _slide_section(result: Mapping[str, Any]) -> str:
    stem = str(result.get("stem", ""))
    name = escape(str(result.get("slide", "")))
    parts = [f'<section class="slide" id="slide-{escape(stem)}"><h3>{name}</h3>']
    parts.append(f'<p class="sub">{escape(str(result.get("path", "")))}</p>')
    if result.get("status") != "ok":
        parts.append(f'<p class="err">failed: {escape(str(result.get("error", "")))}</p></section>')
        return "".join(parts)
    links = [
        (f"{stem}.labels.tif", "label map (TIFF)"),
        (f"{stem}.geojson", "GeoJSON (QuPath: File > Import objects)"),
        (f"{stem}.overlay.png", "overlay"),
        (f".{stem}.result.json", "result (JSON)"),
    ]
    parts.append(
        '<p class="links">' + "".join(f'<a href="{_href(f)}">{escape(t)}</a>' for f, t in links) + "</p>"
    )
    parts.append(f'<img alt="overlay of {name}" src="{_href(stem + ".overlay.png")}">')
    parts.append(_rows_table(result.get("rows") or []))
    return "".join(parts) + "</section>"


def _settings(results: Sequence[Mapping[str, Any]], extra: Mapping[str, Any]) -> str:
    from histoseg.report.tables import package_versions

    items: list[tuple[str, Any]] = [("checkpoint sha256", extra.get("checkpoint_sha256"))]
    items.append(("classes", ", ".join(map(str, extra.get("classes") or []))))
    sources = Counter(str(r.get("mpp_source")) for r in results if r.get("status") == "ok")
    items.append(("mpp source", ", ".join(f"{k}: {v} slides" for k, v in sorted(sources.items()))))
    for key, value in (extra.get("settings") or {}).items():
        if key not in ("checkpoint_sha256", "classes"):  # shown above
            items.append((str(key), value))
    for key, value in extra.items():
        if key not in ("settings", "classes", "checkpoint_sha256") and not isinstance(value, (Mapping, list)):
            items.append((str(key), value))
    items += [(f"version {k}", v) for k, v in package_versions().items()]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape('' if v is None else str(v))}</dd>" for k, v in items)
    return f"<dl>{rows}</dl>"


def render_html(
    results: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> str:
    """The report page as a string.

    Args:
        results: Per-slide result dicts (``slide``, ``stem``, ``status``, ``error``, ``rows``, ...).
        extra: Run facts as stored in ``report.json`` (``settings``, ``classes``, ``checkpoint_sha256``...).
        out_dir: The output folder (thumbnails are read from its overlays; None: no thumbnails).

    Returns:
        The HTML document.
    """
    extra = dict(extra or {})
    folder = Path(out_dir) if out_dir is not None else None
    classes = _class_names(results, extra.get("classes"))
    background = str((extra.get("settings") or {}).get("background_class") or "background")
    failed = sum(r.get("status") != "ok" for r in results)
    has_plot = folder is None or (folder / "cohort.png").is_file()
    plot = '<img alt="cohort plot" src="cohort.png">' if has_plot else "<p>no cohort plot</p>"
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>histoseg cohort report ({len(results)} slides)</title><style>{_STYLE}</style></head><body>",
            "<h1>histoseg cohort report</h1>",
            f'<p class="sub">{len(results)} slides: {len(results) - failed} ok, {failed} failed; '
            f"histoseg {escape(__version__)}. Tables: "
            '<a href="report.csv">report.csv</a> <a href="report.json">report.json</a></p>',
            f'<p class="note">Interstitial fraction: {escape(INTERSTITIAL_FRACTION_DEFINITION)}. '
            "Click a column header to sort; click a slide for its overlay and files.</p>",
            "<h2>Slides</h2>",
            _cohort_table(results, folder, classes, background),
            f"<h2>Cohort plot</h2>{plot}",
            "<h2>Per slide</h2>",
            "".join(_slide_section(r) for r in results),
            "<h2>Settings</h2>",
            _settings(results, extra),
            f"<script>{_SCRIPT}</script></body></html>\n",
        ]
    )


def write_html_report(
    out_dir: str | os.PathLike[str],
    results: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/index.html`` (atomically) and return its path."""
    final = Path(out_dir) / "index.html"
    text = render_html(results, extra, out_dir)
    with atomic_path(final) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return final
