"""Per-slide estimates from counted points: the design-matched estimators and the headline.

Called by ``quantify`` for each slide with points in the ``--points`` folder. The points and their
design come from :mod:`histoseg.report.counting`; the estimators from
:mod:`histoseg.sampling.estimators`; the model's side (its class at each point, its class areas
over the counting frame) from the slide's label map. Per slide this gives (docs/intervals.md):

- ``point_if``: point counting alone, with the design's interval (Wilson for random points or
  points without a design; the Matérn grid variance for a grid; stratified for strata);
- ``ppi_if``: prediction-powered inference, with the design's variance;
- ``post-stratified`` (random and grid designs) and ``stratified`` (stratified designs): the
  model's classes as strata;
- ``cross-fitted PPI`` when fold models fine-tuned on the same points are given;
- the **headline** ``if_estimate`` with ``if_ci_low``, ``if_ci_high``, ``if_method``,
  ``if_points``, chosen by :data:`HEADLINE` for the design, and ``if_points_needed``: the points
  that would bring its interval to the target half-width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from histoseg.labels.counted_points import UNCLASSIFIED
from histoseg.report.areas import label_map_counts_where, label_map_values_at
from histoseg.report.counting import CountedSlide
from histoseg.report.point_counts import wilson_interval
from histoseg.sampling.estimators import (
    FractionEstimate,
    point_counting,
    points_needed,
    post_stratified,
    prediction_powered,
)
from histoseg.sampling.frame import OUTSIDE, CountingFrame
from histoseg.sampling.variance import DesignSample

__all__ = ["GRID_VARIANCE", "HEADLINE", "FoldModel", "headline_key", "slide_point_estimates"]

_COMPARTMENTS = ("interstitium", "tubules", "glomeruli")

HEADLINE: dict[str, tuple[str, ...]] = {
    "grid": ("cross-fitted PPI", "post-stratified", "point counting"),
    "random": ("cross-fitted PPI", "post-stratified", "point counting"),
    "none": ("cross-fitted PPI", "post-stratified", "point counting"),
    "stratified": ("cross-fitted PPI", "stratified", "point counting"),
}
"""The headline estimator of each design: the first of its list that is defined for the slide.

Fixed before the points are seen (choosing the narrower interval after seeing both would bend the
coverage); chosen from the benchmark of docs/benchmarks.md ("Counting points").
"""


GRID_VARIANCE = "matern"
"""Variance estimator of grid points (docs/intervals.md): Matérn's 2 x 2 contrasts."""


@dataclass
class FoldModel:
    """A model fine-tuned without one fold of the points (cross-fitting).

    Attributes:
        labels: Its label map of the slide (TIFF path or (H, W) uint8 array, same grid as the main one).
        held_out: Names of the points it never saw in training.
    """

    labels: Path | np.ndarray
    held_out: set[str]


def headline_key(estimates: dict[str, FractionEstimate], design: str) -> str | None:
    """The headline's key in ``estimates`` by :data:`HEADLINE` (None when none is defined)."""
    for key in HEADLINE.get(design, HEADLINE["none"]):
        est = estimates.get(key)
        if est is not None and math.isfinite(est.estimate) and math.isfinite(est.se):
            return key
    return None


def _frame_inside(frame: CountingFrame, scale: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Label-map pixels whose centre lies in the frame (``scale`` = level-0 px per label pixel)."""
    cw, ch = frame.cell_size
    width, height = frame.slide_size
    rows_n, cols_n = frame.shape

    def inside(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        yc, xc = (rows + 0.5) * scale, (cols + 0.5) * scale
        r = np.minimum(np.floor(yc / ch).astype(np.int64), rows_n - 1)
        c = np.minimum(np.floor(xc / cw).astype(np.int64), cols_n - 1)
        mask = frame.cells[r][:, c] != OUTSIDE
        return mask & (yc < height)[:, None] & (xc < width)[None, :]

    return inside


def _model_side(
    labels: Path | np.ndarray, counted: CountedSlide, scale: float, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's class at each used point, and its class counts over the frame (None: no frame)."""
    height, width = shape
    r = np.clip(np.floor(counted.y / scale).astype(np.int64), 0, height - 1)
    c = np.clip(np.floor(counted.x / scale).astype(np.int64), 0, width - 1)
    at_points = label_map_values_at(labels, r, c)
    if counted.design is None:
        return at_points, None
    return at_points, label_map_counts_where(labels, _frame_inside(counted.design.frame, scale))


def _indicators(values: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    names = list(classes)
    v = values.astype(np.int64)
    a = (v == names.index("interstitium")).astype(np.float64)
    b = np.isin(v, [names.index(c) for c in _COMPARTMENTS]).astype(np.float64)
    return a, b


def _class_fractions(
    counted: CountedSlide, sample: DesignSample, classes: Sequence[str], background: int | None
) -> dict[str, tuple[float, float, float, int]]:
    """Each class's share of tissue (points not on glass): ``(fraction, low, high, points)``."""
    label = counted.label.astype(np.int64)
    tissue = (label != background).astype(np.float64) if background is not None else np.ones(label.size)
    out = {}
    for k, name in enumerate(classes):
        if k == background:
            continue
        hit = (label == k).astype(np.float64)
        if sample.kind in ("random",) or counted.design is None:
            denom = int(tissue.sum())
            low, high = wilson_interval(int(hit.sum()), denom)
            frac = hit.sum() / denom if denom else math.nan
        else:
            est = point_counting(sample, hit, tissue)
            frac, low, high = est.estimate, est.ci_low, est.ci_high
        out[name] = (float(frac), float(low), float(high), int(hit.sum()))
    return out


def _legacy_domain(
    counts: np.ndarray, unlabelled: int, at_points: np.ndarray, label: np.ndarray, background: int | None
) -> tuple[np.ndarray, np.ndarray, float, str]:
    """Points without a design: the PPI domain (whole slide, or the model's tissue if no point is on glass)."""
    keep = np.ones(label.size, bool)
    total = float(counts.sum()) + float(unlabelled)
    domain_counts = counts.astype(np.float64)
    domain = "slide"
    if background is not None and not np.any(label == background):
        domain = "tissue"
        keep = (at_points != background) & (at_points != UNCLASSIFIED)
        domain_counts = domain_counts.copy()
        domain_counts[background] = 0
        total = float(domain_counts.sum())
    return keep, domain_counts, total, domain


def _design_estimate(
    counted: CountedSlide, sample: DesignSample, a: np.ndarray, b: np.ndarray
) -> tuple[str, FractionEstimate]:
    """Point counting alone with the design's interval (Wilson for random points or no design), and its key."""
    if counted.design is None or counted.design.kind == "random":
        k, denom = int(a.sum()), int(b.sum())
        low, high = wilson_interval(k, denom)
        se = math.nan if denom == 0 else math.sqrt(max(k / denom * (1 - k / denom), 1e-12) / denom)
        return "point counting", FractionEstimate(
            k / denom if denom else math.nan, low, high, se, sample.n, "point counting", "Wilson (random points)"
        )
    key = "stratified" if counted.design.kind == "stratified" else "point counting"
    return key, point_counting(sample, a, b)


def _headline_fields(chosen: FractionEstimate, design_name: str, target_halfwidth: float) -> dict[str, Any]:
    """The headline ``if_*`` fields of the chosen estimate (the ``estimate`` field of the result)."""
    needed = points_needed(chosen, target_halfwidth)
    return {
        "if_estimate": chosen.estimate,
        "if_ci_low": chosen.ci_low,
        "if_ci_high": chosen.ci_high,
        "if_method": f"{chosen.method} ({chosen.variance})",
        "if_points": chosen.n,
        "if_points_needed": needed,
        "if_more_points": None if needed is None else max(0, needed - chosen.n),
        "if_design": design_name,
        "target_halfwidth": target_halfwidth,
    }


def slide_point_estimates(
    counted: CountedSlide | None,
    pred: Any,
    labels_path: Path | np.ndarray,
    rows: list[dict[str, Any]],
    background: int | None,
    *,
    target_halfwidth: float = 0.05,
    folds: Sequence[FoldModel] = (),
    grid_variance: str = GRID_VARIANCE,
) -> dict[str, Any] | None:
    """The slide's estimates from its counted points, added to its report rows.

    Adds to each class row ``point_fraction``, ``point_ci_low``, ``point_ci_high`` and
    ``point_count``, and to every row of the slide ``point_if*``, ``ppi_if*`` and the headline
    ``if_estimate``, ``if_ci_low``, ``if_ci_high``, ``if_method``, ``if_points``,
    ``if_points_needed``, ``if_design``.

    Args:
        counted: The slide's counted points (:func:`~histoseg.report.counting.load_counted_points`;
            None: no points, returns None).
        pred: The slide's prediction (``classes``, ``counts``, ``shape``, ``mpp``, ``slide_mpp``,
            ``unlabelled_pixels``).
        labels_path: Its label-map TIFF (or the (H, W) uint8 label map).
        rows: The slide's report rows, updated in place.
        background: Index of the glass class, or None.
        target_halfwidth: The half-width the report says how many points would reach.
        folds: Fold models for cross-fitted PPI (empty: none).
        grid_variance: Variance estimator of grid points (:data:`GRID_VARIANCE`; ``matern``,
            ``pairs`` or ``random``).

    Returns:
        The slide's estimates (the ``point_counting`` field of its result), or None without points.
    """
    if counted is None:
        return None
    classes = list(pred.classes)
    result: dict[str, Any] = {
        "files": [p.name for p in counted.files],
        "design": counted.design_name,
        "rounds": counted.rounds,
        "points_used": len(counted.ids),
        "points_pending": counted.pending,
        "notes": counted.notes,
        "estimators": {},
        "target_halfwidth": target_halfwidth,
    }
    if not _COMPARTMENTS_PRESENT(classes) or len(counted.ids) == 0:
        _write_rows(rows, result, {}, None)
        return result
    scale = float(pred.mpp) / float(pred.slide_mpp)
    at_points, frame_counts = _model_side(labels_path, counted, scale, tuple(pred.shape))
    sample = counted.sample(grid_variance)
    a, b = _indicators(counted.label, classes)
    key, alone = _design_estimate(counted, sample, a, b)
    estimates: dict[str, FractionEstimate] = {key: alone}
    if frame_counts is None:
        keep, domain_counts, total, domain = _legacy_domain(
            np.asarray(pred.counts), int(pred.unlabelled_pixels), at_points, counted.label, background
        )
    else:
        keep, domain = np.ones(len(counted.ids), bool), "frame"
        full = frame_counts.astype(np.float64)
        domain_counts = full[: len(classes)]
        total = float(full.sum())
    result["ppi_domain"] = domain
    if total > 0:
        fa, fb = _indicators(at_points, classes)
        share = np.append(domain_counts, max(0.0, total - domain_counts.sum())) / total
        model_a = float(share[classes.index("interstitium")])
        model_b = float(sum(share[classes.index(c)] for c in _COMPARTMENTS))
        sub = sample.subset(keep)
        estimates["PPI"] = prediction_powered(sub, a[keep], b[keep], fa[keep], fb[keep], model_a, model_b)
        if sample.kind != "stratified":
            post = np.where(at_points >= len(classes), len(classes), at_points).astype(np.int64)
            post_a, post_b = _indicators(np.arange(len(classes) + 1), classes)  # the model's class per stratum
            estimates["post-stratified"] = post_stratified(sub, a[keep], b[keep], post[keep], share, post_a, post_b)
        if folds and counted.design is not None:
            crossfit = _cross_fitted(counted, sample, a, b, classes, scale, tuple(pred.shape), folds)
            if crossfit is not None:
                estimates["cross-fitted PPI"] = crossfit
    fractions = _class_fractions(counted, sample, classes, background)
    result["class_fractions"] = {k: list(v) for k, v in fractions.items()}
    result["estimators"] = {k: {**v._asdict(), "halfwidth": v.halfwidth} for k, v in estimates.items()}
    head = headline_key(estimates, counted.design_name)
    if head is not None:
        result["estimate"] = _headline_fields(estimates[head], counted.design_name, target_halfwidth)
    _write_rows(rows, result, fractions, estimates)
    return result


def _COMPARTMENTS_PRESENT(classes: Sequence[str]) -> bool:  # noqa: N802 - reads as a predicate
    return set(_COMPARTMENTS) <= set(classes)


def _cross_fitted(
    counted: CountedSlide,
    sample: DesignSample,
    a: np.ndarray,
    b: np.ndarray,
    classes: Sequence[str],
    scale: float,
    shape: tuple[int, int],
    folds: Sequence[FoldModel],
) -> FractionEstimate | None:
    """Cross-fitted PPI: each point scored by the fold model that never saw it."""
    assert counted.design is not None
    names = [str(i) for i in counted.ids]
    owner = np.full(len(names), -1, np.int64)
    for j, fold in enumerate(folds):
        for k, name in enumerate(names):
            if name in fold.held_out:
                if owner[k] >= 0:
                    return None  # a point held out by two fold models: not a partition
                owner[k] = j
    if (owner < 0).any():
        return None  # some point was seen by every fold model
    f_a = np.zeros(len(names))
    f_b = np.zeros(len(names))
    model_a = model_b = 0.0
    for j, fold in enumerate(folds):
        values, counts = _model_side(fold.labels, counted, scale, shape)
        assert counts is not None
        total = float(counts.sum())
        fa, fb = _indicators(values, classes)
        f_a[owner == j], f_b[owner == j] = fa[owner == j], fb[owner == j]
        model_a += counts[list(classes).index("interstitium")] / total / len(folds)
        model_b += sum(counts[list(classes).index(c)] for c in _COMPARTMENTS) / total / len(folds)
    return prediction_powered(sample, a, b, f_a, f_b, model_a, model_b, cross_fitted=True)


def _write_rows(
    rows: list[dict[str, Any]],
    result: dict[str, Any],
    fractions: dict[str, tuple[float, float, float, int]],
    estimates: dict[str, FractionEstimate] | None,
) -> None:
    """Copy the estimates into the slide's report rows (class rows get their class fraction)."""
    estimates = estimates or {}
    counting = estimates.get("point counting") or estimates.get("stratified")
    ppi = estimates.get("PPI")
    head = result.get("estimate") or {}
    per_slide: dict[str, Any] = {
        "point_if": counting.estimate if counting else math.nan,
        "point_if_ci_low": counting.ci_low if counting else math.nan,
        "point_if_ci_high": counting.ci_high if counting else math.nan,
        "ppi_if": ppi.estimate if ppi else math.nan,
        "ppi_if_ci_low": ppi.ci_low if ppi else math.nan,
        "ppi_if_ci_high": ppi.ci_high if ppi else math.nan,
        "ppi_points": ppi.n if ppi else 0,
        "ppi_domain": result.get("ppi_domain", ""),
        "if_estimate": head.get("if_estimate", math.nan),
        "if_ci_low": head.get("if_ci_low", math.nan),
        "if_ci_high": head.get("if_ci_high", math.nan),
        "if_method": head.get("if_method", ""),
        "if_points": head.get("if_points", result.get("points_used", 0)),
        "if_points_needed": head.get("if_points_needed"),
        "if_design": result.get("design", ""),
    }
    for row in rows:
        value = fractions.get(row["class"])
        row["point_fraction"] = value[0] if value else math.nan
        row["point_ci_low"] = value[1] if value else math.nan
        row["point_ci_high"] = value[2] if value else math.nan
        row["point_count"] = value[3] if value else 0
        row.update(per_slide)
