"""Per-slide estimates from counted grid points: point counting and prediction-powered inference.

Called by the ``quantify`` command for each slide whose grid points are in the ``--points``
folder; the numbers come from :mod:`histoseg.report.point_counts` (Wilson intervals) and
:mod:`histoseg.report.ppi` (prediction-powered interval, docs/intervals.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from histoseg.labels.points import level0_to_mask_index, read_points
from histoseg.report.areas import label_map_values_at
from histoseg.report.point_counts import point_count_fractions
from histoseg.report.ppi import ppi_interstitial_fraction

__all__ = ["slide_point_estimates"]


def slide_point_estimates(
    folder: Path | None,
    slide: Path,
    pred: Any,
    labels_path: Path,
    rows: list[dict[str, Any]],
    background: int | None,
) -> dict[str, Any] | None:
    """Point-count and prediction-powered estimates from the slide's grid points, added to its rows.

    Looks for ``<folder>/<slide stem>.points.csv`` (or ``.geojson``). Adds to each class row
    ``point_fraction``, ``point_ci_low``, ``point_ci_high`` (Wilson 95 %) and ``point_count``
    beside the segmentation's ``fraction_of_tissue``, and to every row of the slide the
    interstitial fraction by points alone (``point_if``, Wilson 95 % ``point_if_ci_low/high``) and
    by prediction-powered inference (``ppi_if``, delta-method 95 % ``ppi_if_ci_low/high``, over
    ``ppi_points`` points of the ``ppi_domain``; :mod:`histoseg.report.ppi`). Returns the estimates
    (None without a points file).

    Args:
        folder: The ``--points`` folder (None: no points, returns None).
        slide: The slide file (its stem names the points file).
        pred: The slide's :class:`histoseg.inference.predict.SlidePrediction` (classes, counts,
            shape, mpp, slide mpp and size, unlabelled pixels).
        labels_path: Its label-map TIFF (read at the points).
        rows: The slide's report rows, updated in place.
        background: Index of the glass class, or None.
    """
    if folder is None:
        return None
    candidates = [folder / f"{slide.stem}.points{suffix}" for suffix in (".csv", ".geojson", ".json")]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        return None
    classes = pred.classes
    size = pred.slide_dimensions
    points = read_points(found, classes, slide_size=(int(size[0]), int(size[1])))
    estimate = point_count_fractions(points, classes)
    for row in rows:
        value = estimate.get(row["class"])
        row["point_fraction"] = value.fraction if value else math.nan
        row["point_ci_low"] = value.ci_low if value else math.nan
        row["point_ci_high"] = value.ci_high if value else math.nan
        row["point_count"] = value.n if value else 0
    total = estimate.get("interstitial_fraction")
    result: dict[str, Any] = {
        "file": found.name,
        "interstitial_fraction": total.fraction if total else math.nan,
        "interstitial_fraction_ci": [total.ci_low, total.ci_high] if total else [math.nan, math.nan],
    }
    per_slide = {
        "point_if": result["interstitial_fraction"],
        "point_if_ci_low": result["interstitial_fraction_ci"][0],
        "point_if_ci_high": result["interstitial_fraction_ci"][1],
    }
    if total is not None:
        scale = pred.mpp / pred.slide_mpp
        height, width = pred.shape
        r = np.clip(level0_to_mask_index(points.y, scale), 0, height - 1)
        c = np.clip(level0_to_mask_index(points.x, scale), 0, width - 1)
        at_points = label_map_values_at(labels_path, r, c)
        ppi, domain = ppi_interstitial_fraction(
            pred.counts,
            at_points,
            points.label,
            classes,
            unlabelled_pixels=pred.unlabelled_pixels,
            background=classes[background] if background is not None else None,
        )
        result["ppi"] = {**ppi._asdict(), "domain": domain, "interval": "delta method, 95 %"}
        per_slide.update(
            ppi_if=ppi.estimate,
            ppi_if_ci_low=ppi.ci_low,
            ppi_if_ci_high=ppi.ci_high,
            ppi_points=ppi.n,
            ppi_domain=domain,
        )
    for row in rows:
        row.update(per_slide)
    return result
