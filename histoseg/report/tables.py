"""Per-slide and cohort report tables: CSV and JSON.

This module owns how results are shown and stored (the numbers come from
:mod:`histoseg.report.areas`); every file is written atomically (:func:`histoseg.io.files.atomic_path`).

- :func:`report_rows` flattens per-slide results into one row per slide x class (one row with
  ``status = failed`` and the reason for a slide that failed), columns :data:`REPORT_COLUMNS`;
- :func:`write_report_csv` / :func:`write_report_json` (the JSON also records the definitions of
  the interstitial fraction and the other columns);

Figures (overlay and cohort plot) are in :mod:`histoseg.report.figures`.

Example:
    >>> from histoseg.report.tables import report_rows, write_report_csv
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
from histoseg.io.files import atomic_path
from histoseg.io.text import spreadsheet_safe
from histoseg.report.areas import INTERSTITIAL_FRACTION_DEFINITION

__all__ = [
    "DEFINITIONS",
    "REPORT_COLUMNS",
    "model_outside_headline",
    "report_rows",
    "slide_headline",
    "write_report_csv",
    "write_report_json",
]

AREA_COLUMNS: tuple[str, ...] = (
    "pixels",
    "area_um2",
    "area_mm2",
    "fraction_of_tissue",
    "interstitial_fraction",
    "expected_interstitial_fraction",
    "tta_fraction_min",
    "tta_fraction_max",
    "expected_area_um2",
)
"""The columns measured from the label map: NaN on the row of a slide that has no areas."""

_HEADLINE_KEYS: tuple[str, ...] = (
    "if_estimate",
    "if_ci_low",
    "if_ci_high",
    "if_method",
    "if_points",
    "if_points_needed",
    "if_design",
)
"""The headline columns of a slide with counted points (:mod:`histoseg.report.estimates`)."""

REPORT_COLUMNS: tuple[str, ...] = (
    "slide",
    "class",
    *AREA_COLUMNS,
    *_HEADLINE_KEYS,
    "point_fraction",
    "point_ci_low",
    "point_ci_high",
    "point_count",
    "point_if",
    "point_if_ci_low",
    "point_if_ci_high",
    "ppi_if",
    "ppi_if_ci_low",
    "ppi_if_ci_high",
    "ppi_points",
    "ppi_domain",
    "mpp",
    "mpp_source",
    "label_mpp",
    "precision",
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
    "expected_interstitial_fraction": "the interstitial fraction of the expected areas (expected_area_um2: "
    "softmax probabilities summed over pixels) instead of the argmax areas; a gap to interstitial_fraction "
    "means many uncertain pixels",
    "tta_fraction_min": "quantify --tta: smallest interstitial fraction over the 8 rotations/mirrors of the "
    "tiles, each view's own label map (from the tile weighted most at each pixel); tta_fraction_max: the "
    "largest; their spread is a test-time-augmentation uncertainty interval (empty without --tta; with "
    "--tta, interstitial_fraction and the areas come from the softmax averaged over the 8 views)",
    "precision": "precision the network ran at: 32 (float32), bf16 or 16 (autocast); quantify --precision "
    "auto picks bf16 where it is native and agrees with fp32 on the first tiles",
    "if_estimate": "the slide's headline interstitial fraction from its counted points (quantify --points), "
    "by the estimator the documented rule picks for the points' design (docs/intervals.md); "
    "if_ci_low/high: its 95 % interval",
    "if_method": "the headline's estimator and its variance (e.g. post-stratified (grid, Matérn))",
    "if_points": "classified points the headline used",
    "if_points_needed": "points that would bring the headline's interval to the target half-width "
    "(quantify --target_halfwidth), from its current variance; count more with another histoseg sample round",
    "if_design": "how the points were placed: grid, random or stratified (histoseg sample), none (no design "
    "record: treated as random)",
    "point_fraction": "stereological point-count estimate of fraction_of_tissue from the slide's counted points "
    "(quantify --points); point_ci_low/high: its 95 % interval (Wilson for random points, the design's "
    "otherwise); point_count: points in the class",
    "point_if": "interstitial fraction by point counting alone (quantify --points): points in interstitium "
    "/ points in interstitium, tubules and glomeruli; point_if_ci_low/high: its 95 % interval (Wilson for "
    "random points, the design's variance for grid and stratified points)",
    "ppi_if": "prediction-powered interstitial fraction (Angelopoulos et al., Science 2023): the model's "
    "value on every pixel corrected by the model-versus-point disagreement at the grid points, as a ratio "
    "of two corrected means; ppi_if_ci_low/high: its 95 % interval by the delta method; unbiased whatever "
    "the model, narrow when the model agrees with the points",
    "ppi_points": "counted points used by ppi_if",
    "ppi_domain": "what the points are taken to sample: frame (the counting frame of histoseg sample), "
    "slide (no design record, points on glass included: the whole label map) or tissue (no design record, "
    "no point on glass: the pixels the model calls tissue, and the points on them)",
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
            slides that succeeded, ``rows`` (from :func:`histoseg.report.areas.class_areas`), ``mpp``,
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
            "precision": result.get("precision", ""),
            "checkpoint_sha256": result.get("checkpoint_sha256", ""),
            "training_seed": result.get("training_seed", ""),
            "histoseg_version": result.get("histoseg_version", __version__),
            "status": result.get("status", "ok"),
            "error": result.get("error", ""),
            "path": str(result.get("path", "")),
        }
        class_rows = result.get("rows") or []
        if base["status"] != "ok" or not class_rows:
            row: dict[str, Any] = {key: "" for key in REPORT_COLUMNS}
            row.update(base)
            for key in AREA_COLUMNS:
                row[key] = math.nan
            out.append(row)
            continue
        for class_row in class_rows:
            row = dict(base)
            row.update({key: class_row.get(key, math.nan) for key in REPORT_COLUMNS if key in class_row})
            out.append({key: row.get(key, "") for key in REPORT_COLUMNS})
    return out


def _csv_value(value: Any) -> Any:
    """The CSV cell of a value: NaN empty, floats exact, text never a spreadsheet formula."""
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(float(value)) else repr(float(value))
    return spreadsheet_safe(value)


def write_report_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write report rows as CSV (columns :data:`REPORT_COLUMNS`; NaN written empty), atomically.

    Text cells that a spreadsheet would run as a formula (a slide named ``=cmd|...``) get a leading
    single quote (:func:`histoseg.io.text.spreadsheet_safe`); numbers are written as numbers.
    """
    final = Path(path)
    with atomic_path(final) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(REPORT_COLUMNS), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({key: _csv_value(row.get(key, "")) for key in REPORT_COLUMNS})
    return final


REPORTED_PACKAGES: tuple[str, ...] = (
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
)
"""The packages whose versions determine the numbers (in report.json and ``histoseg doctor``)."""


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that determine the numbers."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version(), "histoseg": __version__}
    for name in REPORTED_PACKAGES:
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


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def slide_headline(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The slide's headline estimate from its counted points, or None when it has none.

    Read from ``result["point_counting"]["estimate"]`` (quantify ``--points``), else from the first
    report row with a finite ``if_estimate``. ``if_more_points`` (the points to count in addition to
    reach the target half-width) is derived from ``if_points_needed - if_points`` when absent.

    Example:
        >>> h = slide_headline({"point_counting": {"estimate": {"if_estimate": 0.3, "if_ci_low": 0.2,
        ...     "if_ci_high": 0.4, "if_points": 100, "if_points_needed": 150}}})
        >>> h["if_more_points"]
        50
    """
    counting = result.get("point_counting")
    estimate = counting.get("estimate") if isinstance(counting, Mapping) else None
    if not isinstance(estimate, Mapping):
        estimate = next(
            (
                {k: row.get(k) for k in _HEADLINE_KEYS}
                for row in result.get("rows") or []
                if _finite(row.get("if_estimate")) is not None
            ),
            None,
        )
    if estimate is None or any(_finite(estimate.get(k)) is None for k in _HEADLINE_KEYS[:3]):
        return None
    head = dict(estimate)
    if head.get("if_more_points") is None:
        needed, points = _finite(head.get("if_points_needed")), _finite(head.get("if_points"))
        head["if_more_points"] = None if needed is None or points is None else max(0, int(needed - points))
    return head


def model_outside_headline(result: Mapping[str, Any]) -> bool | None:
    """Whether the model-only interstitial fraction lies outside the headline's interval (None: no
    headline or no model value)."""
    head = slide_headline(result)
    model = _finite(result.get("interstitial_fraction"))
    if head is None or model is None:
        return None
    return not float(head["if_ci_low"]) <= model <= float(head["if_ci_high"])
