"""Per-slide and cohort report files: CSV, JSON, overlay PNG, cohort plot PNG.

This module owns how results are shown and stored (the numbers come from
:mod:`histoseg.quantify`); every file is written atomically (:func:`histoseg.io_utils.atomic_path`).

- :func:`report_rows` flattens per-slide results into one row per slide x class (one row with
  ``status = failed`` and the reason for a slide that failed), columns :data:`REPORT_COLUMNS`;
- :func:`write_report_csv` / :func:`write_report_json` (the JSON also records the definitions of
  the interstitial fraction and the other columns);
- :func:`write_overlay_png`: the slide thumbnail beside the same thumbnail with the label map
  blended in, with a legend (class colour, area, % of tissue) and the interstitial fraction;
- :func:`write_cohort_png`: the interstitial fraction of every slide (dot plot; failed slides
  listed in red).

Plots use matplotlib's object API with the Agg canvas (no global backend switch, no display).

Example:
    >>> from histoseg.report import report_rows, write_report_csv
    >>> rows = report_rows([{"slide": "a.svs", "status": "failed", "error": "truncated"}])
    >>> rows[0]["status"], rows[0]["error"]
    ('failed', 'truncated')
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from histoseg import __version__
from histoseg.io_utils import atomic_path
from histoseg.quantify import INTERSTITIAL_FRACTION_DEFINITION, class_colors, find_class

__all__ = [
    "DEFINITIONS",
    "REPORT_COLUMNS",
    "report_rows",
    "write_cohort_png",
    "write_overlay_png",
    "write_report_csv",
    "write_report_json",
]

REPORT_COLUMNS: tuple[str, ...] = (
    "slide",
    "class",
    "pixels",
    "area_um2",
    "area_mm2",
    "fraction_of_tissue",
    "interstitial_fraction",
    "expected_area_um2",
    "point_fraction",
    "point_ci_low",
    "point_ci_high",
    "point_count",
    "mpp",
    "mpp_source",
    "label_mpp",
    "checkpoint_sha256",
    "training_seed",
    "histoseg_version",
    "status",
    "error",
    "path",
)
"""Columns of ``report.csv``, in order."""

DEFINITIONS: dict[str, str] = {
    "interstitial_fraction": INTERSTITIAL_FRACTION_DEFINITION,
    "pixels": "argmax pixels of the class in the label map (made at label_mpp microns per pixel)",
    "area_um2": "pixels x label_mpp^2 (square microns); area_mm2 = area_um2 / 1e6",
    "fraction_of_tissue": "class area / tissue area, tissue = all classes except background (glass); "
    "empty for background",
    "expected_area_um2": "sum over pixels of the softmax probability of the class x label_mpp^2 "
    "(glass tiles not run count as background); its gap to area_um2 is an uncertainty signal",
    "point_fraction": "stereological point-count estimate of fraction_of_tissue from the slide's grid points "
    "(quantify --points); point_ci_low/high: Wilson 95 % interval; point_count: points in the class",
    "mpp": "level-0 resolution of the slide (microns per pixel)",
    "mpp_source": "where mpp came from: metadata (slide file), tiff-resolution (TIFF resolution tags) "
    "or override (given by the user)",
    "label_mpp": "resolution of the label map the areas were counted on (the model's mpp)",
    "status": "ok, or failed with the reason in error",
}
"""What every report column means; stored in ``report.json``."""


def _clean(value: Any) -> Any:
    """JSON-safe value: NaN/inf -> None, NumPy scalars -> Python."""
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def report_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flatten per-slide results into report rows (one per slide x class; one per failed slide).

    Args:
        results: Per-slide dicts with ``slide``, ``status`` (``ok``/``failed``), ``error`` and, for
            slides that succeeded, ``rows`` (from :func:`histoseg.quantify.class_areas`), ``mpp``,
            ``mpp_source``, ``label_mpp``, ``checkpoint_sha256``, ``histoseg_version``, ``path``.

    Returns:
        Dicts with the keys of :data:`REPORT_COLUMNS` (NaN where undefined, "" where absent).
    """
    out: list[dict[str, Any]] = []
    for result in results:
        base = {
            "slide": result.get("slide", ""),
            "mpp": result.get("mpp", math.nan),
            "mpp_source": result.get("mpp_source", ""),
            "label_mpp": result.get("label_mpp", math.nan),
            "checkpoint_sha256": result.get("checkpoint_sha256", ""),
            "training_seed": result.get("training_seed", ""),
            "histoseg_version": result.get("histoseg_version", __version__),
            "status": result.get("status", "ok"),
            "error": result.get("error", ""),
            "path": str(result.get("path", "")),
        }
        class_rows = result.get("rows") or []
        if base["status"] != "ok" or not class_rows:
            row = {key: "" for key in REPORT_COLUMNS}
            row.update(base)
            for key in (
                "pixels",
                "area_um2",
                "area_mm2",
                "fraction_of_tissue",
                "interstitial_fraction",
                "expected_area_um2",
            ):
                row[key] = math.nan
            out.append(row)
            continue
        for class_row in class_rows:
            row = dict(base)
            row.update({key: class_row.get(key, math.nan) for key in REPORT_COLUMNS if key in class_row})
            out.append({key: row.get(key, "") for key in REPORT_COLUMNS})
    return out


def _csv_value(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(float(value)) else repr(float(value))
    return value


def write_report_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write report rows as CSV (columns :data:`REPORT_COLUMNS`; NaN written empty), atomically."""
    final = Path(path)
    with atomic_path(final) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(REPORT_COLUMNS), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({key: _csv_value(row.get(key, "")) for key in REPORT_COLUMNS})
    return final


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that determine the numbers."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version(), "histoseg": __version__}
    for name in (
        "torch",
        "lightning",
        "segmentation-models-pytorch",
        "timm",
        "monai",
        "numpy",
        "scipy",
        "tifffile",
        "openslide-python",
        "openslide-bin",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_report_json(
    path: str | os.PathLike[str],
    results: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the cohort report as JSON (definitions, per-slide results, flat rows), atomically.

    NaN values are written as ``null``. The report holds no timestamps or timings, so the same
    slides, checkpoint and settings give a byte-identical report (also after an interrupted run);
    per-slide timings stay in the ``.<stem>.result.json`` files.
    """
    volatile = ("seconds",)
    results = [{k: v for k, v in r.items() if k not in volatile} for r in results]
    document = {
        "histoseg_version": __version__,
        "versions": package_versions(),
        "interstitial_fraction_definition": INTERSTITIAL_FRACTION_DEFINITION,
        "definitions": DEFINITIONS,
        **(dict(extra) if extra else {}),
        "slides": list(results),
        "rows": report_rows(results),
    }
    final = Path(path)
    with atomic_path(final) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(_clean(document), handle, indent=1, allow_nan=False)
    return final


# -- figures ------------------------------------------------------------------------------------


def _figure(width_in: float, height_in: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | os.PathLike[str]) -> Path:
    final = Path(path)
    with atomic_path(final) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return final


def blend_labels(
    thumbnail: np.ndarray, labels: np.ndarray, colors: np.ndarray, skip: Sequence[int], alpha: float = 0.45
) -> np.ndarray:
    """Blend class colours into an RGB image.

    Args:
        thumbnail: (h, w, 3) uint8.
        labels: (h, w) uint8 class indices (same size).
        colors: (C, 3) uint8 class colours.
        skip: Label values left unblended (background, 255).
        alpha: Opacity of the class colours.

    Returns:
        (h, w, 3) uint8.
    """
    table = np.zeros((256, 3), np.float32)
    table[: len(colors)] = colors
    paint = np.ones(256, bool)
    paint[len(colors) :] = False
    for value in skip:
        if 0 <= value < 256:
            paint[value] = False
    where = paint[labels]
    out = thumbnail.astype(np.float32)
    out[where] = (1.0 - alpha) * out[where] + alpha * table[labels[where]]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _nice_length(target_um: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^k um) not longer than ``target_um``."""
    if not (target_um > 0 and math.isfinite(target_um)):
        return 0.0
    exponent = math.floor(math.log10(target_um))
    for mantissa in (5, 2, 1):
        if mantissa * 10**exponent <= target_um:
            return float(mantissa * 10**exponent)
    return float(10**exponent)


def write_overlay_png(
    path: str | os.PathLike[str],
    thumbnail: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    rows: Sequence[Mapping[str, Any]] | None = None,
    title: str = "",
    background: str | int | None = "background",
    thumbnail_mpp: float | None = None,
    alpha: float = 0.45,
    max_side: int = 1000,
) -> Path:
    """Overlay figure: thumbnail | thumbnail with the label map blended, a legend and a scale bar.

    Args:
        path: Output PNG.
        thumbnail: (h, w, 3) uint8 slide thumbnail.
        labels: (h', w') uint8 label map at any resolution covering the same area (resized nearest).
        classes: Class names.
        rows: Class area rows (:func:`histoseg.quantify.class_areas`) for the legend, or None.
        title: Figure title (e.g. the slide name).
        background: Class left unpainted (glass).
        thumbnail_mpp: Microns per thumbnail pixel, for the scale bar (None: no scale bar).
        alpha: Opacity of the class colours.
        max_side: The thumbnail is shrunk to at most this many pixels on its long side.

    Returns:
        The path written.
    """
    from matplotlib.patches import Patch
    from PIL import Image

    thumb = np.asarray(thumbnail)
    h0, w0 = thumb.shape[:2]
    h, w = h0, w0
    if max(h, w) > max_side:
        factor = max_side / max(h, w)
        w, h = max(1, round(w * factor)), max(1, round(h * factor))
        thumb = np.asarray(Image.fromarray(thumb).resize((w, h), Image.Resampling.BOX))
    small = np.asarray(Image.fromarray(np.asarray(labels, np.uint8)).resize((w, h), Image.Resampling.NEAREST))
    colors = class_colors(classes)
    bg = find_class(classes, background) if isinstance(background, str) else background
    blended = blend_labels(thumb, small, colors, [255] + ([bg] if bg is not None else []), alpha)

    # Exact geometry (inches) so the two image panels sit side by side without gaps.
    panel_w = 5.0
    panel_h = panel_w * h / w
    if panel_h > 7.0:
        panel_h, panel_w = 7.0, 7.0 * w / h
    panel_w = max(panel_w, 1.0)
    shown = [i for i in range(len(classes)) if i != bg]
    legend_rows = math.ceil(len(shown) / 2)
    gap, top, bottom = 0.15, 0.75, 0.45 + 0.24 * legend_rows
    fig_w = max(2 * panel_w + 3 * gap, 7.0)
    fig_h = top + panel_h + bottom
    figure = _figure(fig_w, fig_h)
    x_start = (fig_w - (2 * panel_w + gap)) / 2
    by_class = {str(r.get("class")): r for r in rows or []}
    for column, (image, name) in enumerate(((thumb, "slide"), (blended, "prediction"))):
        left = x_start + column * (panel_w + gap)
        ax = figure.add_axes((left / fig_w, bottom / fig_h, panel_w / fig_w, panel_h / fig_h))
        ax.imshow(image, interpolation="antialiased" if column == 0 else "nearest", aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=9, pad=3)
        if column == 0 and thumbnail_mpp and thumbnail_mpp > 0:
            um_per_px = thumbnail_mpp * w0 / w
            length = _nice_length(0.25 * w * um_per_px)
            if length > 0:
                px = length / um_per_px
                x0, y0 = 0.04 * w, 0.96 * h
                ax.plot([x0, x0 + px], [y0, y0], color="black", linewidth=3, solid_capstyle="butt")
                text = f"{length / 1000:g} mm" if length >= 1000 else f"{length:g} µm"
                ax.text(x0 + px / 2, y0 - 0.015 * h, text, ha="center", va="bottom", fontsize=8)
                ax.set_xlim(-0.5, w - 0.5)
                ax.set_ylim(h - 0.5, -0.5)
    handles, texts = [], []
    fraction = math.nan
    for index in shown:
        name = str(classes[index])
        row = by_class.get(name, {})
        if row:
            fraction = float(row.get("interstitial_fraction", math.nan))
        text = name
        area, share = row.get("area_mm2"), row.get("fraction_of_tissue")
        if area is not None and math.isfinite(float(area)):
            area = float(area)
            text += f"  {area:.3g} mm²" if area >= 1e-4 or area == 0 else f"  {area * 1e6:,.0f} µm²"
        if share is not None and math.isfinite(float(share)):
            text += f"  ({100 * float(share):.1f} % of tissue)"
        handles.append(Patch(facecolor=colors[index] / 255.0, edgecolor="black", linewidth=0.5))
        texts.append(text)
    figure.legend(
        handles,
        texts,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.3 / fig_h),
        ncol=2,
        fontsize=9,
        frameon=False,
        handlelength=1.5,
        columnspacing=2.0,
    )
    figure.text(
        0.5,
        0.08 / fig_h,
        "interstitial fraction = interstitium / (interstitium + tubules + glomeruli)",
        ha="center",
        va="bottom",
        fontsize=7.5,
        color="#555555",
    )
    figure.text(0.5, 1 - 0.12 / fig_h, title, ha="center", va="top", fontsize=11)
    if rows:
        value = f"{100 * fraction:.1f} %" if math.isfinite(fraction) else "n/a"
        figure.text(
            0.5,
            1 - 0.38 / fig_h,
            f"interstitial fraction {value}",
            ha="center",
            va="top",
            fontsize=11,
            fontweight="bold",
        )
    return _save(figure, path)


def write_cohort_png(path: str | os.PathLike[str], results: Sequence[Mapping[str, Any]]) -> Path:
    """Dot plot of the interstitial fraction (%) of every slide; failed slides listed in red.

    Args:
        path: Output PNG.
        results: Per-slide dicts with ``slide``, ``status``, and ``interstitial_fraction`` (or
            ``rows`` carrying it).

    Returns:
        The path written.
    """
    names, values, failed = [], [], []
    for result in results:
        name = str(result.get("slide", ""))
        if result.get("status", "ok") != "ok":
            failed.append(name)
            continue
        value = result.get("interstitial_fraction")
        if value is None and result.get("rows"):
            value = result["rows"][0].get("interstitial_fraction")
        names.append(name)
        values.append(math.nan if value is None else float(value))
    n = max(len(names), 1)
    height = min(1.6 + 0.28 * n + (0.4 if failed else 0.0), 60.0)
    figure = _figure(7.5, height)
    ax = figure.subplots()
    ys = np.arange(len(names))[::-1]
    finite = [math.isfinite(v) for v in values]
    xs = [100 * v if ok else 0.0 for v, ok in zip(values, finite, strict=True)]
    ax.hlines(ys, 0, xs, color="#bbbbbb", linewidth=1)
    ax.scatter(
        [x for x, ok in zip(xs, finite, strict=True) if ok],
        [y for y, ok in zip(ys, finite, strict=True) if ok],
        color="#e69f00",
        edgecolor="black",
        zorder=3,
        s=36,
    )
    for x, y, ok in zip(xs, ys, finite, strict=True):
        ax.annotate(
            f"{x:.1f} %" if ok else "n/a (no kidney tissue classes)",
            (x if ok else 0, y),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(ys, names, fontsize=8)
    ax.set_ylim(-0.7, len(names) - 0.3 if names else 0.7)
    top = max([x for x, ok in zip(xs, finite, strict=True) if ok] + [0.0])
    ax.set_xlim(0, max(100.0 if top > 60 else min(100.0, top * 1.3 + 5), 10.0))
    ax.set_xlabel(
        "interstitial fraction (%) = interstitium / (interstitium + tubules + glomeruli)", fontsize=9
    )
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    ax.set_title(f"Interstitial fraction per slide (n = {len(names)})", fontsize=11)
    if failed:
        shown = ", ".join(failed[:8]) + (f" and {len(failed) - 8} more" if len(failed) > 8 else "")
        figure.text(0.01, 0.01, f"failed ({len(failed)}): {shown}", color="#b00000", fontsize=8)
    figure.tight_layout(rect=(0, 0.04 if failed else 0, 1, 1))
    return _save(figure, path)
