"""Stereological point counting: area fractions estimated from labelled grid points.

The point-count estimate of each class's area fraction, and of the interstitial fraction
``A_int / (A_int + A_tub + A_glom)``, with Wilson score 95 % confidence intervals. It takes any
object with a ``label`` array (a :class:`histoseg.labels.points.PointSet`, duck-typed so that
report arithmetic does not depend on the label readers).

Example:
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from histoseg.report.point_counts import point_count_fractions
    >>> pts = SimpleNamespace(label=np.array([1, 1, 2, 3, 0], np.uint8))
    >>> out = point_count_fractions(pts, ("background", "interstitium", "tubules", "glomeruli"))
    >>> round(out["interstitial_fraction"].fraction, 3), out["interstitial_fraction"].n
    (0.5, 2)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

import numpy as np

Z_95 = 1.959963984540054
"""Two-sided 95 % standard normal quantile used by :func:`wilson_interval`."""


class LabelledPoints(Protocol):
    """Anything with a ``label`` attribute: (N,) integer class index per point."""

    label: np.ndarray


class PointFraction(NamedTuple):
    """A point-counting fraction estimate.

    Attributes:
        fraction: Points in the class / points counted (nan when none were counted).
        ci_low: Lower end of the Wilson score 95 % interval.
        ci_high: Upper end of the Wilson score 95 % interval.
        n: Number of points in the class (the numerator).
    """

    fraction: float
    ci_low: float
    ci_high: float
    n: int


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``k / n`` (Wilson, JASA 1927).

    ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``; unlike the normal (Wald)
    interval it stays inside [0, 1] and keeps its coverage for small ``n`` and for ``p``
    near 0 or 1 (Brown, Cai & DasGupta, Stat. Sci. 2001). ``n = 0`` gives ``(0, 1)``.

    Args:
        k: Successes, ``0 <= k <= n``.
        n: Trials.
        z: Normal quantile (1.96 for 95 %).

    Returns:
        ``(low, high)``.
    """
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    if k == 0:
        low = 0.0
    if k == n:
        high = 1.0
    return low, high


INTERSTITIAL_KEY = "interstitial_fraction"
"""Key of the interstitial-fraction estimate in :func:`point_count_fractions`."""


def point_count_fractions(
    points: LabelledPoints, classes: Sequence[str], exclude: Iterable[str] = ("background",)
) -> dict[str, PointFraction]:
    """Stereological point counting: area fractions estimated from point counts.

    With points on a systematic grid, the fraction of points that hit a class is an unbiased
    estimate of that class's area fraction (Delesse principle; Weibel, *Stereological
    Methods*, 1979). Points of the ``exclude`` classes (glass) are not counted. The
    confidence intervals are **Wilson score 95 % intervals** that treat the points as
    independent binomial trials; grid points are systematic rather than random, which
    usually makes the true error smaller, so the interval is conservative for large regular
    structures.

    Also returns, under the key ``"interstitial_fraction"`` (when the classes include
    interstitium, tubules and glomeruli), the biomarker
    ``A_int / (A_int + A_tub + A_glom)`` estimated as points in interstitium / points in
    those three classes.

    Args:
        points: Labelled points (anything with a ``label`` (N,) class-index array).
        classes: Class names in label-index order.
        exclude: Class names not counted (default: background).

    Returns:
        Class name -> :class:`PointFraction` ``(fraction, ci_low, ci_high, n)`` for every class
        not excluded (``n`` = points in the class; the denominator is the sum of ``n``), plus
        ``"interstitial_fraction"`` (``n`` = interstitium points; denominator = points in the
        three classes).
    """
    names = tuple(classes)
    excluded = set(exclude)
    counts = np.bincount(points.label.astype(np.int64), minlength=len(names))[: len(names)]
    counted = [i for i, name in enumerate(names) if name not in excluded]
    total = int(sum(int(counts[i]) for i in counted))
    result: dict[str, PointFraction] = {}
    for i in counted:
        k = int(counts[i])
        low, high = wilson_interval(k, total)
        result[names[i]] = PointFraction(k / total if total else float("nan"), low, high, k)
    if {"interstitium", "tubules", "glomeruli"} <= set(names):
        k = int(counts[names.index("interstitium")])
        denom = k + int(counts[names.index("tubules")]) + int(counts[names.index("glomeruli")])
        low, high = wilson_interval(k, denom)
        result[INTERSTITIAL_KEY] = PointFraction(k / denom if denom else float("nan"), low, high, k)
    return result


__all__ = [
    "INTERSTITIAL_KEY",
    "Z_95",
    "LabelledPoints",
    "PointFraction",
    "point_count_fractions",
    "wilson_interval",
]
