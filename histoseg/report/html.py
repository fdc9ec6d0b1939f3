"""The cohort report as one static web page: ``OUT/index.html``.

:func:`write_html_report` renders the per-slide results of a quantify run (the dicts of the
``.<stem>.result.json`` files) into a self-contained page that opens from disk: no server, no
network, no external scripts, styles or fonts. It shows

- the cohort table, one row per slide (sortable by clicking a column header), narrow enough for a
  1280 px window: a thumbnail of the prediction (the overlay's prediction panel), the status, the
  model's interstitial fraction; with counted points (``--points``) the slide's headline estimate
  with its 95 % interval (``38.2 % (33.1–43.4)``), its method, its points and the points still
  needed for the target half-width, and a "model outside" badge (with a tooltip and a legend
  sentence) when the model-only value lies outside that interval; the tissue area; the model's
  variability under rotation (TTA spread, never beside the intervals and never called one) only
  when ``--tta`` was used and the error only when a slide failed;
- the cohort plot ``cohort.png``;
- per slide, one click away (a ``<details>``): the overlay ``<stem>.overlay.png``, links to its
  label map, GeoJSON and result file, its slide-level numbers in words and its classes' areas and
  shares of tissue (columns without a value left out);
- the run's settings in words (checkpoint hash, resolution sources, tiling, precision, versions).

Numbers are formatted one way throughout: fractions as percentages with one decimal, areas in mm²
with 3 significant digits (never with an exponent).

Every string from the user's data (slide names, paths, errors) is HTML-escaped; file links are
URL-quoted relative links. The page is written atomically and rebuilt on every run (also a resume).
A script sets ``data-rows`` (table rows), ``data-images-ok`` (``loaded/total``) and
``data-overflow`` (pixels the page or the cohort table is wider than the window) on ``<html>``
after the page loads, so a headless browser can check it (``tests/report/test_html.py``).

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
from histoseg.report.figures import PREDICTION_BOX_KEY
from histoseg.report.tables import model_outside_headline, slide_headline

__all__ = ["render_html", "write_html_report"]

_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:1.2em 2em;color:#222;
max-width:110em} h1{font-size:1.5em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ccc}
.sub{color:#666;margin-top:0} table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right;vertical-align:middle}
th{background:#f3f3f3;position:sticky;top:0;font-weight:600} td.t,th.t{text-align:left}
#cohort th{cursor:pointer;user-select:none;text-align:left}
#cohort th[aria-sort=ascending]::after{content:" \\25B2"} #cohort th[aria-sort=descending]::after{content:" \\25BC"}
tr.failed td{background:#fdecea} td.name{min-width:10em;max-width:18em;overflow-wrap:anywhere}
.err{color:#b00020;text-align:left;min-width:12em;max-width:24em;overflow-wrap:anywhere;font-size:.9em}
img.thumb{display:block;max-width:128px;max-height:96px}
.wide{overflow-x:auto;max-width:100%} img{max-width:100%;height:auto}
details.slide{margin:.6em 0;border:1px solid #ddd;border-radius:4px;padding:.3em .8em}
details.slide>summary{cursor:pointer;padding:.2em 0} details.slide[open]>summary{margin-bottom:.5em}
.links a{margin-right:1em} dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2em 1em}
dt{font-weight:600} dd{margin:0;overflow-wrap:anywhere} code{font-family:ui-monospace,Menlo,Consolas,monospace}
.note{color:#555;font-size:.9em;max-width:60em}
.flag{display:inline-block;margin-left:.4em;padding:0 .4em;border-radius:3px;background:#b00020;color:#fff;
font-size:.8em;font-weight:600;white-space:nowrap;cursor:help} tr.disagree td{background:#fff4e5}
td.method{text-align:left;font-size:.85em;max-width:13em}
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
  function openTarget(){var id=decodeURIComponent(location.hash.slice(1));
    var el=id?document.getElementById(id):null;if(el&&el.tagName==='DETAILS'){el.open=true;el.scrollIntoView();}}
  window.addEventListener('hashchange',openTarget);
  document.addEventListener('click',function(e){var a=e.target.closest&&e.target.closest('a[href^="#slide-"]');
    var el=a?document.getElementById(decodeURIComponent(a.getAttribute('href').slice(1))):null;
    if(el&&el.tagName==='DETAILS')el.open=true;});
  window.addEventListener('load',function(){
    openTarget();
    var imgs=document.images,ok=0;
    for(var j=0;j<imgs.length;j++){if(imgs[j].complete&&imgs[j].naturalWidth>0)ok++;}
    var root=document.documentElement,wide=document.querySelector('.wide');
    root.setAttribute('data-images-ok',ok+'/'+imgs.length);
    root.setAttribute('data-rows',table?String(table.tBodies[0].rows.length):'0');
    root.setAttribute('data-overflow',String(Math.max(root.scrollWidth-root.clientWidth,
      wide?wide.scrollWidth-wide.clientWidth:0)));});
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


def _fmt(value: Any, kind: str = "auto") -> str:
    """A number as text: ``percent`` (fraction -> ``25.0 %``), ``area`` (3 significant digits, never
    an exponent), ``count`` (integer with thousands separators) or ``auto``; "" for None/NaN."""
    number = _number(value)
    if number is None:
        return "" if value is None or _number_like_nan(value) else str(value)
    if kind == "percent":
        return f"{100 * number:.1f} %"
    if kind == "area":
        return _significant(number, 3)
    if kind == "count":
        return f"{round(number):,}"
    if float(number).is_integer() and abs(number) < 1e15:
        return str(int(number))
    return _significant(number, 4)


def _significant(number: float, digits: int) -> str:
    """``number`` rounded to ``digits`` significant digits, in plain decimal notation (no exponent)."""
    if number == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(number)))
    rounded = round(number, decimals)
    return f"{rounded:.{max(decimals, 0)}f}"


def _number_like_nan(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _cell(text: str, sort: Any = None, cls: str = "", title: str = "") -> str:
    value = _number(sort)
    attr = f' data-v="{value!r}"' if value is not None else (f' data-v="{escape(str(sort))}"' if sort else "")
    klass = f' class="{cls}"' if cls else ""
    tip = f' title="{escape(title)}"' if title else ""
    return f"<td{klass}{attr}{tip}>{text}</td>"


def _href(name: str) -> str:
    return escape(quote(name), quote=True)


def _thumbnail(path: Path, box: tuple[int, int] = (128, 96)) -> str | None:
    """A small PNG of an overlay's prediction panel as a ``data:`` URI (None when unreadable).

    The overlay records its prediction panel's pixel box (:data:`PREDICTION_BOX_KEY`); an image
    without it (an older overlay, any other picture) is shrunk whole.
    """
    try:
        from PIL import Image

        with Image.open(path) as opened:
            crop = _box(opened.info.get(PREDICTION_BOX_KEY), opened.size)
            image = opened.convert("RGB")
            if crop is not None:
                image = image.crop(crop)
            image.thumbnail(box)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=True)
    except (OSError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _box(text: Any, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    try:
        left, top, right, bottom = (int(v) for v in str(text).split())
    except ValueError:
        return None
    ok = 0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]
    return (left, top, right, bottom) if ok else None


def _class_names(results: Sequence[Mapping[str, Any]], classes: Sequence[str] | None) -> list[str]:
    names = list(classes or [])
    for result in results:
        for row in result.get("rows") or []:
            if str(row.get("class")) not in names:
                names.append(str(row.get("class")))
    return names


def _background_name(extra: Mapping[str, Any], classes: Sequence[str]) -> str:
    value = (extra.get("settings") or {}).get("background_class")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
        return str(classes[value])
    return str(value) if value not in (None, "") else "background"


def _tissue_mm2(result: Mapping[str, Any], background: str) -> float | None:
    rows = [r for r in result.get("rows") or [] if str(r.get("class")) != background]
    areas = [_number(r.get("area_mm2")) for r in rows]
    return sum(a for a in areas if a is not None) if rows else None


def _tta_range(result: Mapping[str, Any]) -> tuple[float, float] | None:
    low, high = _number(result.get("tta_fraction_min")), _number(result.get("tta_fraction_max"))
    return (low, high) if low is not None and high is not None else None


TTA_TITLE = (
    "lowest to highest interstitial fraction of the model over the 8 rotated/mirrored views (quantify --tta): "
    "the model's variability under rotation, not a confidence interval; it can miss the true fraction entirely"
)


FLAG_TITLE = (
    "the model-only value lies outside the 95 % interval of the estimate from the counted points: "
    "the model and the points disagree on this slide; trust the points and look at the overlay"
)


def _interval(head: Mapping[str, Any]) -> str:
    """``38.2 % (33.1–43.4)``: a headline estimate with its 95 % interval."""
    low, high = 100 * float(head["if_ci_low"]), 100 * float(head["if_ci_high"])
    return f"{_fmt(head['if_estimate'], 'percent')} ({low:.1f}–{high:.1f})"


def _halfwidth_text(results: Sequence[Mapping[str, Any]]) -> str:
    """``±5.0 %`` when every headline has the same target half-width, else ""."""
    halfwidths = (_number(h.get("target_halfwidth")) for h in map(slide_headline, results) if h is not None)
    targets = {t for t in halfwidths if t is not None}
    return f"±{100 * targets.pop():.1f} %" if len(targets) == 1 else ""


def _more_points(head: Mapping[str, Any]) -> tuple[str, str]:
    """The points still to count for the target half-width, and its tooltip."""
    more = _number(head.get("if_more_points"))
    target = _number(head.get("target_halfwidth"))
    goal = f"a 95 % interval of ±{100 * target:.1f} %" if target is not None else "the target half-width"
    if more is None:
        return "", f"cannot be worked out from these points for {goal}"
    needed = _number(head.get("if_points_needed"))
    total = f" ({int(needed):,} in all)" if needed is not None else ""
    return f"{int(more):,}", f"points to classify in addition for {goal}{total}"


def _cohort_table(results: Sequence[Mapping[str, Any]], out_dir: Path | None, background: str) -> str:
    """The cohort table: the columns a reader compares slides by; the rest is in each slide's details."""
    failed = any(r.get("status") != "ok" for r in results)
    tta = any(_tta_range(r) is not None for r in results)
    heads_of = [slide_headline(r) if r.get("status") == "ok" else None for r in results]
    points = any(h is not None for h in heads_of)
    heads: list[tuple[str, str]] = [("", "prediction thumbnail"), ("Slide", "click the name for its details")]
    heads.append(("Status", "ok, or failed (the reason in Error)"))
    heads.append(("Interstitial fraction (model)", INTERSTITIAL_FRACTION_DEFINITION))
    if points:
        heads.append(("Estimate from counted points (95 % interval)", HEADLINE_TITLE))
        heads.append(("Method", "the estimator the points' design calls for, and its variance"))
        heads.append(("Points", "classified points the estimate used"))
        target = _halfwidth_text(results)
        heads.append(
            (f"More points for {target}" if target else "More points needed", "points still to classify")
        )
    heads.append(("Tissue (mm²)", "area of every class except background (glass)"))
    if tta:
        heads.append(("Model variability under rotation", TTA_TITLE))
    if failed:
        heads.append(("Error", "why the slide failed"))
    body = []
    for result, head in zip(results, heads_of, strict=True):
        stem = str(result.get("stem", ""))
        ok = result.get("status") == "ok"
        thumb = _thumbnail(out_dir / f"{stem}.overlay.png") if out_dir is not None and ok else None
        name = str(result.get("slide", ""))
        cells = [_cell(f'<img class="thumb" alt="" src="{thumb}">' if thumb else "", cls="t")]
        link = escape(name).replace("_", "_<wbr>")  # long scanner names wrap at their underscores
        cells.append(_cell(f'<a href="#slide-{_href(stem)}">{link}</a>', name, "t name"))
        cells.append(_cell(escape(str(result.get("status", ""))), str(result.get("status", "")), "t"))
        value = result.get("interstitial_fraction") if ok else None
        cells.append(_cell(_fmt(value, "percent"), value))
        flagged = bool(model_outside_headline(result)) if head is not None else False
        if points and head is not None:
            badge = f' <span class="flag" title="{escape(FLAG_TITLE)}">model outside</span>' if flagged else ""
            cells.append(_cell(escape(_interval(head)) + badge, head["if_estimate"]))
            cells.append(_cell(escape(str(head.get("if_method") or "")), cls="method", title=_design(head)))
            cells.append(_cell(_fmt(head.get("if_points"), "count"), head.get("if_points")))
            more, tip = _more_points(head)
            cells.append(_cell(more, _number(head.get("if_more_points")), title=tip))
        elif points:
            cells += [_cell("no counted points" if ok else "", cls="t"), _cell(""), _cell(""), _cell("")]
        tissue = _tissue_mm2(result, background) if ok else None
        cells.append(_cell(_fmt(tissue, "area"), tissue))
        if tta:
            spread = _tta_range(result) if ok else None
            text = f"{100 * spread[0]:.1f}–{100 * spread[1]:.1f} %" if spread else ""
            cells.append(_cell(text, spread[0] if spread else None, title=TTA_TITLE if spread else ""))
        if failed:
            cells.append(_cell(escape(str(result.get("error") or "")), cls="err"))
        klass = "ok disagree" if flagged else ("ok" if ok else "failed")
        body.append(f'<tr class="{klass}">' + "".join(cells) + "</tr>")
    head_row = "".join(f'<th title="{escape(tip)} (click to sort)">{escape(h)}</th>' for h, tip in heads)
    table = f'<table id="cohort"><thead><tr>{head_row}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    notes = []
    if points:
        notes.append(
            "<b>Estimate from counted points</b>: the slide's headline interstitial fraction from its "
            "classified points, by the estimator the points' design calls for, with its 95 % interval; "
            "the model-only value is the model's label map alone, without an interval. "
            f'<span class="flag" title="{escape(FLAG_TITLE)}">model outside</span> marks a slide whose '
            "model-only value lies outside that interval: the model and the points disagree there; "
            "trust the points and look at its overlay."
        )
    if tta:
        notes.append(
            "<b>Model variability under rotation</b> is the lowest to highest model value over the 8 "
            "rotated/mirrored views (--tta): how much the model changes its mind, not a confidence "
            "interval; it can miss the true fraction entirely."
        )
    legend = "".join(f'<p class="note">{n}</p>' for n in notes)
    return f'<div class="wide">{table}</div>{legend}'


HEADLINE_TITLE = (
    "the headline interstitial fraction from the slide's counted points (quantify --points) and its "
    "95 % interval"
)


def _design(head: Mapping[str, Any]) -> str:
    design = str(head.get("if_design") or "")
    return f"points placed by design: {design}" if design else ""


_CLASS_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("area_mm2", "Area (mm²)", "area"),
    ("fraction_of_tissue", "Share of tissue", "percent"),
    ("pixels", "Pixels in the label map", "count"),
    ("expected_area_um2", "Expected area (mm², softmax)", "area_um2"),
    ("point_fraction", "Share of tissue by points", "percent"),
    ("point_count", "Points in the class", "count"),
)
"""The per-class columns of a slide's table: key, heading, format (slide-level values are listed once)."""


def _class_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One slide's classes: the per-class columns that hold a value for some class."""
    if not rows:
        return ""
    columns = [c for c in _CLASS_COLUMNS if any(_number(r.get(c[0])) is not None for r in rows)]
    head = '<th class="t">Class</th>' + "".join(f"<th>{escape(h)}</th>" for _, h, _ in columns)
    body = []
    for row in rows:
        cells = [f'<td class="t">{escape(str(row.get("class", "")))}</td>']
        for key, _, kind in columns:
            value = _number(row.get(key))
            if kind == "area_um2":
                text = _fmt(None if value is None else value / 1e6, "area")
            else:
                text = _fmt(value, kind)
            if key == "point_fraction" and text:
                low, high = _number(row.get("point_ci_low")), _number(row.get("point_ci_high"))
                if low is not None and high is not None:
                    text += f" ({100 * low:.1f}–{100 * high:.1f})"
            cells.append(f"<td>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _slide_facts(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The slide-level numbers, in words."""
    facts = [("Interstitial fraction (model)", _fmt(result.get("interstitial_fraction"), "percent"))]
    expected = _fmt(result.get("expected_interstitial_fraction"), "percent")
    if expected:
        facts.append(("Interstitial fraction from the softmax (expected) areas", expected))
    head = slide_headline(result)
    if head is not None:
        facts.append(("Estimate from counted points (95 % interval)", _interval(head)))
        if model_outside_headline(result):
            facts.append(("Model versus points", "the model-only value lies outside this interval"))
        facts.append(("Method", str(head.get("if_method") or "")))
        facts.append(("Design of the points", str(head.get("if_design") or "")))
        facts.append(("Points used", _fmt(head.get("if_points"), "count")))
        more, tip = _more_points(head)
        if more:
            facts.append(("More points to classify", f"{more}: {tip}"))
        facts += _other_estimates(result)
    spread = _tta_range(result)
    if spread is not None:
        facts.append(
            (
                "Model variability under rotation (8 views)",
                f"{100 * spread[0]:.1f}–{100 * spread[1]:.1f} % (not a confidence interval)",
            )
        )
    mpp = _number(result.get("mpp"))
    if mpp is not None:
        source = _MPP_SOURCES.get(str(result.get("mpp_source")), str(result.get("mpp_source") or "unknown"))
        facts.append(("Slide resolution", f"{mpp:.3g} µm per pixel ({source})"))
    label = _number(result.get("label_mpp"))
    if label is not None:
        facts.append(("Label map resolution", f"{label:.3g} µm per pixel"))
    if result.get("precision"):
        facts.append(("Precision", _precision_words(result.get("precision"))))
    run, total = _number(result.get("tiles_run")), _number(result.get("tiles_total"))
    if run is not None and total is not None:
        facts.append(("Tiles run", f"{int(run):,} of {int(total):,} (the others are glass)"))
    return [(k, v) for k, v in facts if v]


def _other_estimates(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every estimator computed from the slide's points (``point_counting.estimators``)."""
    counting = result.get("point_counting")
    estimators = counting.get("estimators") if isinstance(counting, Mapping) else None
    out = []
    for name, est in (estimators or {}).items():
        if not isinstance(est, Mapping) or _number(est.get("estimate")) is None:
            continue
        low, high = _number(est.get("ci_low")), _number(est.get("ci_high"))
        text = _fmt(est.get("estimate"), "percent")
        if low is not None and high is not None:
            text += f" ({100 * low:.1f}–{100 * high:.1f})"
        if _number(est.get("n")) is not None:
            text += f", {_fmt(est.get('n'), 'count')} points"
        if est.get("variance"):
            text += f"; variance: {est['variance']}"
        out.append((f"Estimator: {name}", text))
    return out


_MPP_SOURCES = {
    "metadata": "from the slide's metadata",
    "tiff-resolution": "from the TIFF resolution tags",
    "override": "set with --mpp",
}


def _slide_section(result: Mapping[str, Any]) -> str:
    stem = str(result.get("stem", ""))
    name = escape(str(result.get("slide", "")))
    ok = result.get("status") == "ok"
    summary = f"<b>{name}</b>"
    if ok:
        summary += f" — interstitial fraction (model) {escape(_fmt(result.get('interstitial_fraction'), 'percent'))}"
        head = slide_headline(result)
        if head is not None:
            summary += f"; from counted points {escape(_interval(head))}"
            if model_outside_headline(result):
                summary += f' <span class="flag" title="{escape(FLAG_TITLE)}">model outside</span>'
    else:
        summary += ' — <span class="err">failed</span>'
    parts = [f'<details class="slide" id="slide-{escape(stem)}"><summary>{summary}</summary>']
    parts.append(f'<p class="sub">{escape(str(result.get("path", "")))}</p>')
    if not ok:
        parts.append(f'<p class="err">failed: {escape(str(result.get("error", "")))}</p></details>')
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
    parts.append("<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in _slide_facts(result)))
    parts.append("</dl>")
    parts.append(_class_table(result.get("rows") or []))
    return "".join(parts) + "</details>"


_PRECISIONS = {
    "32": "float32",
    "bf16": "bfloat16 (autocast)",
    "16": "float16 (autocast)",
    "auto": "auto (bfloat16 where the device runs it natively and it agrees with float32 on the first tiles)",
}


def _precision_words(value: Any) -> str:
    values = value if isinstance(value, (list, tuple)) else [value]
    return ", ".join(_PRECISIONS.get(str(v), str(v)) for v in values) or "not recorded"


def _words(value: Any) -> str:
    """A setting's value in words (no Python reprs)."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_words(v) for v in value) or "none"
    if _number(value) is not None:
        return _fmt(value)
    return str(value)


def _setting(key: str, value: Any, classes: Sequence[str]) -> tuple[str, str]:
    """One run setting as ``(label, value in words)``."""
    number = _number(value)
    if key == "label_mpp" and number is not None:
        return "Label map resolution", f"{number:.3g} µm per pixel"
    if key == "tile_size":
        return "Tile size", f"{_words(value)} pixels"
    if key == "overlap" and number is not None:
        return "Tile overlap", f"{100 * number:g} % of a tile"
    if key == "blend":
        return "Blending of overlapping tiles", _words(value)
    if key == "margin":
        return "Tile margin dropped", f"{_words(value)} pixels"
    if key == "skip_glass":
        return "Glass tiles", "skipped (counted as background)" if value else "run through the model"
    if key == "precision":
        return "Precision asked for", _precision_words(value)
    if key == "precision_used":
        return "Precision used", _precision_words(value)
    if key == "channels_last":
        return "Channels-last memory layout", {None: "chosen per device", True: "yes", False: "no"}.get(
            value, _words(value)
        )
    if key == "tta":
        return "Test-time augmentation", (
            "yes: softmax averaged over 8 rotations/mirrors" if value else "no (quantify --tta not used)"
        )
    if key == "mpp_override":
        return "Slide resolution", (
            "read from each slide" if value is None else f"set with --mpp to {_words(value)} µm per pixel"
        )
    if key == "background_class":
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
            value = classes[value]
        return "Background (glass) class", _words(value)
    if key == "training_seed":
        return "Training seed", "not recorded" if value is None else _words(value)
    if key == "world_size":
        return "Processes", _words(value)
    if key == "target_halfwidth" and number is not None:
        return "Target half-width of the 95 % interval", f"±{100 * number:.1f} %"
    return key.replace("_", " ").capitalize(), _words(value)


def _settings(results: Sequence[Mapping[str, Any]], extra: Mapping[str, Any]) -> str:
    from histoseg.report.tables import package_versions

    classes = [str(c) for c in extra.get("classes") or []]
    items: list[tuple[str, str]] = []
    if extra.get("checkpoint_sha256"):
        items.append(("Checkpoint (SHA-256)", f"<code>{escape(str(extra['checkpoint_sha256']))}</code>"))
    items.append(("Classes", escape(", ".join(classes) or "not recorded")))
    sources = Counter(str(r.get("mpp_source")) for r in results if r.get("status") == "ok")
    text = "; ".join(
        f"{_MPP_SOURCES.get(k, k)}: {v} slide{'s' if v != 1 else ''}" for k, v in sorted(sources.items())
    )
    items.append(("Where the slide resolution came from", escape(text or "no slide done")))
    pairs = [(k, v) for k, v in (extra.get("settings") or {}).items() if k not in ("checkpoint_sha256", "classes")]
    pairs += [
        (k, v)
        for k, v in extra.items()
        if k not in ("settings", "classes", "checkpoint_sha256") and not isinstance(v, (Mapping, list))
    ]
    items += [(label, escape(value)) for label, value in (_setting(str(k), v, classes) for k, v in pairs)]
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    items.append(("Versions", escape(versions)))
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in items)
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
    background = _background_name(extra, classes)
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
            "Click a column header to sort; click a slide for its overlay, class areas and files.</p>",
            "<h2>Slides</h2>",
            _cohort_table(results, folder, background),
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
