"""Report figures: the per-slide overlay PNG and the cohort plot PNG.

- :func:`write_overlay_png`: the slide thumbnail beside the same thumbnail with the label map
  blended in, with a legend (class colour, area, % of tissue) and the interstitial fraction;
- :func:`write_cohort_png`: the interstitial fraction of every slide (dot plot; failed slides
  listed in red), with each slide's headline estimate from counted points and its 95 % interval
  beside the model-only value, and the slides where the two disagree marked.

Plots use matplotlib's object API with the Agg canvas (no global backend switch, no display);
every file is written atomically (:func:`histoseg.io.files.atomic_path`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from histoseg.io.files import atomic_path
from histoseg.report.areas import class_colors, find_class

__all__ = ["PREDICTION_BOX_KEY", "blend_labels", "cohort_figure", "write_cohort_png", "write_overlay_png"]


def _figure(width_in: float, height_in: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(figure)
    return figure


PREDICTION_BOX_KEY = "histoseg prediction box"
"""PNG text key of an overlay: ``"left top right bottom"``, the prediction panel's pixel box in the PNG
(the cohort page thumbnails that panel, not the whole figure with its legend)."""


def _save(figure: Any, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None) -> Path:
    final = Path(path)
    with atomic_path(final) as tmp:
        figure.savefig(tmp, format="png", dpi=100, metadata=dict(metadata or {}))
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


def _draw_points(ax: Any, points: tuple[np.ndarray, np.ndarray, np.ndarray], colors: np.ndarray, w: int, h: int) -> None:
    """Counted points on an image axis of ``w`` x ``h`` pixels: filled with the class colour, black edge."""
    x, y, label = (np.asarray(v) for v in points)
    px, py = x * w - 0.5, y * h - 0.5
    size = 18.0 if x.size <= 400 else 8.0
    done = label != 255
    if done.any():
        face = colors[np.minimum(label[done].astype(np.int64), len(colors) - 1)] / 255.0
        ax.scatter(px[done], py[done], s=size, c=face, edgecolors="black", linewidths=0.7, zorder=3)
    if (~done).any():
        ax.scatter(px[~done], py[~done], s=size, facecolors="none", edgecolors="black", linewidths=0.7, zorder=3)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)


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
    points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Overlay figure: thumbnail | thumbnail with the label map blended, a legend and a scale bar.

    Args:
        path: Output PNG.
        thumbnail: (h, w, 3) uint8 slide thumbnail.
        labels: (h', w') uint8 label map at any resolution covering the same area (resized nearest).
        classes: Class names.
        rows: Class area rows (:func:`histoseg.report.areas.class_areas`) for the legend, or None.
        title: Figure title (e.g. the slide name).
        background: Class left unpainted (glass).
        thumbnail_mpp: Microns per thumbnail pixel, for the scale bar (None: no scale bar).
        alpha: Opacity of the class colours.
        max_side: The thumbnail is shrunk to at most this many pixels on its long side.
        points: Counted points drawn on the prediction panel: ``(x, y, class)`` with x and y as
            fractions of the slide's width and height and the pathologist's class index (255:
            not classified yet, drawn hollow). A point whose colour differs from the map under it
            is one the model and the pathologist disagree on.

    Returns:
        The path written.
    """
    thumb, small, w0 = _shrink(thumbnail, labels, max_side)
    h, w = thumb.shape[:2]
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
    box = ""
    for column, (image, name) in enumerate(((thumb, "slide"), (blended, "prediction"))):
        left = x_start + column * (panel_w + gap)
        ax = figure.add_axes((left / fig_w, bottom / fig_h, panel_w / fig_w, panel_h / fig_h))
        ax.imshow(image, interpolation="antialiased" if column == 0 else "nearest", aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name if column == 0 or points is None else f"{name} + counted points", fontsize=9, pad=3)
        if column == 1 and points is not None:
            _draw_points(ax, points, colors, w, h)
        if column == 1:  # pixel box of the panel inside its frame line (the PNG is fig_w x fig_h x 100 px)
            x0, y0 = round(left * 100) + 2, round((fig_h - bottom - panel_h) * 100) + 2
            x1, y1 = round((left + panel_w) * 100) - 2, round((fig_h - bottom) * 100) - 2
            box = f"{x0} {y0} {max(x0 + 1, x1)} {max(y0 + 1, y1)}"
        if column == 0 and thumbnail_mpp and thumbnail_mpp > 0:
            _draw_scale_bar(ax, thumbnail_mpp * w0 / w, w, h)
    handles, texts, fraction = _legend_entries(classes, shown, rows, colors)
    _draw_legend_and_titles(figure, handles, texts, fig_h, title, fraction if rows else None)
    return _save(figure, path, {PREDICTION_BOX_KEY: box})


def _shrink(thumbnail: np.ndarray, labels: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The thumbnail shrunk to at most ``max_side`` pixels, the label map resized to it, its original width.

    Box filter for the thumbnail, nearest neighbour for the labels.
    """
    from PIL import Image

    thumb = np.asarray(thumbnail)
    h, w0 = thumb.shape[:2]
    w = w0
    if max(h, w) > max_side:
        factor = max_side / max(h, w)
        w, h = max(1, round(w * factor)), max(1, round(h * factor))
        thumb = np.asarray(Image.fromarray(thumb).resize((w, h), Image.Resampling.BOX))
    small = np.asarray(Image.fromarray(np.asarray(labels, np.uint8)).resize((w, h), Image.Resampling.NEAREST))
    return thumb, small, w0


def _draw_scale_bar(ax: Any, um_per_px: float, w: int, h: int) -> None:
    """A black bar of a round length (about a quarter of the panel) at its bottom left, labelled."""
    length = _nice_length(0.25 * w * um_per_px)
    if length > 0:
        px = length / um_per_px
        x0, y0 = 0.04 * w, 0.96 * h
        ax.plot([x0, x0 + px], [y0, y0], color="black", linewidth=3, solid_capstyle="butt")
        text = f"{length / 1000:g} mm" if length >= 1000 else f"{length:g} µm"
        ax.text(x0 + px / 2, y0 - 0.015 * h, text, ha="center", va="bottom", fontsize=8)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)


def _legend_entries(
    classes: Sequence[str],
    shown: Sequence[int],
    rows: Sequence[Mapping[str, Any]] | None,
    colors: np.ndarray,
) -> tuple[list[Any], list[str], float]:
    """Legend patches and texts (class, area, share of tissue) and the rows' interstitial fraction."""
    from matplotlib.patches import Patch

    by_class = {str(r.get("class")): r for r in rows or []}
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
    return handles, texts, fraction


def _draw_legend_and_titles(
    figure: Any, handles: list[Any], texts: list[str], fig_h: float, title: str, fraction: float | None
) -> None:
    """The legend and the definition below the panels; the title and the interstitial fraction above.

    ``fraction`` None: no class-area rows, so no fraction line.
    """
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
    if fraction is not None:
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


def _cohort_slides(
    results: Sequence[Mapping[str, Any]],
) -> tuple[list[str], list[float], list[Any], list[bool], list[str]]:
    """The plotted slides' names, fractions, headlines and "model outside" flags, and the failed slides' names."""
    from histoseg.report.tables import model_outside_headline, slide_headline

    names, values, heads, flags, failed = [], [], [], [], []
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
        heads.append(slide_headline(result))
        flags.append(bool(model_outside_headline(result)))
    return names, values, heads, flags, failed


def _draw_model_dots(
    ax: Any, xs: list[float], model_y: np.ndarray, finite: list[bool], flags: list[bool]
) -> None:
    """The model-only values: a stem, a dot (ringed red when outside the interval) and its label per slide."""
    ax.hlines(model_y, 0, xs, color="#bbbbbb", linewidth=1)
    ax.scatter(
        [x for x, ok in zip(xs, finite, strict=True) if ok],
        [y for y, ok in zip(model_y, finite, strict=True) if ok],
        color="#e69f00",
        edgecolors=["#d00000" if f else "black" for f, ok in zip(flags, finite, strict=True) if ok],
        linewidths=[2.0 if f else 0.8 for f, ok in zip(flags, finite, strict=True) if ok],
        marker="o",
        zorder=3,
        s=36,
    )
    for x, y, ok in zip(xs, model_y, finite, strict=True):
        ax.annotate(
            f"{x:.1f} %" if ok else "n/a (no kidney tissue classes)",
            (x if ok else 0, y),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )


def _draw_point_estimates(
    figure: Any, ax: Any, shown: list[tuple[float, Any, bool]], failed: list[str], height: float
) -> list[float]:
    """The counted points' estimates with their 95 % intervals, "model outside" marks and the legend; the upper ends."""
    from matplotlib.lines import Line2D

    est = np.array([100 * float(h["if_estimate"]) for _, h, _ in shown])
    low = np.array([100 * float(h["if_ci_low"]) for _, h, _ in shown])
    high = np.array([100 * float(h["if_ci_high"]) for _, h, _ in shown])
    ax.errorbar(
        est,
        [y for y, _, _ in shown],
        xerr=[est - low, high - est],
        fmt="s",
        color="#0072b2",
        markersize=5,
        capsize=3,
        elinewidth=1.2,
        zorder=4,
        label="estimate from counted points, 95 % interval",
    )
    for (y, _, flag), right in zip(shown, high, strict=True):
        if flag:
            ax.annotate(
                "model outside",
                (right, y),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=7.5,
                color="#d00000",
                fontweight="bold",
            )
    handles = [
        Line2D([], [], marker="o", linestyle="", color="#e69f00", markeredgecolor="black", label="model only"),
        Line2D([], [], marker="s", color="#0072b2", label="from counted points (95 % interval)"),
    ]
    if any(f for _, _, f in shown):
        handles.append(
            Line2D([], [], marker="o", linestyle="", color="#e69f00", markeredgecolor="#d00000",
                   markeredgewidth=2.0, label="model outside the interval")  # fmt: skip
        )
    figure.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, (0.3 if failed else 0.02) / height),
                  ncol=len(handles), fontsize=7.5, frameon=False)  # fmt: skip
    return list(high)


def cohort_figure(results: Sequence[Mapping[str, Any]]) -> Any:
    """The cohort plot as a matplotlib Figure (see :func:`write_cohort_png`)."""
    names, values, heads, flags, failed = _cohort_slides(results)
    n = max(len(names), 1)
    any_head = any(h is not None for h in heads)
    height = min(1.6 + 0.28 * n * (1.5 if any_head else 1.0) + (0.4 if failed else 0.0), 60.0)
    height += 0.5 if any_head else 0.0
    figure = _figure(7.5, height)
    ax = figure.subplots()
    ys = np.arange(len(names), dtype=float)[::-1]
    model_y = ys + (0.15 if any_head else 0.0)  # the model above, the estimate from points below
    finite = [math.isfinite(v) for v in values]
    xs = [100 * v if ok else 0.0 for v, ok in zip(values, finite, strict=True)]
    _draw_model_dots(ax, xs, model_y, finite, flags)
    rights = [x for x, ok in zip(xs, finite, strict=True) if ok]
    shown = [(y - 0.15, h, f) for y, h, f in zip(ys, heads, flags, strict=True) if h is not None]
    if shown:
        rights += _draw_point_estimates(figure, ax, shown, failed, height)
    ax.set_yticks(ys, [_short(name) for name in names], fontsize=8)
    for label, flag in zip(ax.get_yticklabels(), flags, strict=True):
        if flag:
            label.set_color("#d00000")
    ax.set_ylim(-0.7, len(names) - 0.3 if names else 0.7)
    top = max(rights + [0.0])
    ax.set_xlim(0, max(100.0 if top > 60 else min(100.0, top * 1.3 + 5), 10.0))
    ax.set_xlabel(
        "interstitial fraction (%) = interstitium / (interstitium + tubules + glomeruli)", fontsize=8
    )
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    ax.set_title(f"Interstitial fraction per slide (n = {len(names)})", fontsize=11)
    if failed:
        listed = ", ".join(failed[:8]) + (f" and {len(failed) - 8} more" if len(failed) > 8 else "")
        figure.text(0.01, 0.01, f"failed ({len(failed)}): {listed}", color="#b00000", fontsize=8)
    reserved = (0.3 if failed else 0.0) + (0.35 if shown else 0.0)
    figure.tight_layout(rect=(0, reserved / height, 1, 1))
    return figure


def _short(name: str, limit: int = 36) -> str:
    """A slide name for a tick label: long names keep their start and end (``slide_00_wi…scanner.svs``)."""
    if len(name) <= limit:
        return name
    head = (limit - 1) * 2 // 3
    return name[:head] + "…" + name[-(limit - 1 - head) :]


def write_cohort_png(path: str | os.PathLike[str], results: Sequence[Mapping[str, Any]]) -> Path:
    """Dot plot of the interstitial fraction (%) of every slide; failed slides listed in red.

    Each slide's model-only value is a dot; a slide with counted points (quantify ``--points``) also
    gets its headline estimate as a square with its 95 % interval as error bars, just below the dot;
    a slide whose model-only value lies outside that interval has its dot ringed and its name in red
    and is marked "model outside".

    Args:
        path: Output PNG.
        results: Per-slide dicts with ``slide``, ``status``, and ``interstitial_fraction`` (or
            ``rows`` carrying it), and ``point_counting.estimate`` when the slide has counted points.

    Returns:
        The path written.
    """
    return _save(cohort_figure(results), path)
