"""Prediction-powered inference (PPI) of the interstitial fraction from a label map and grid points.

A model's label map gives the interstitial fraction on every pixel but with an unknown bias; a
pathologist's grid points give an unbiased but noisy estimate from a few hundred pixels. PPI
(Angelopoulos, Bates, Fannjiang, Jordan, Zrnic, *Science* 382, 2023; docs/methods.md section 8)
combines the two: the model's value on all pixels, corrected by the model-versus-reference
disagreement measured at the points (the *rectifier*). The estimate is unbiased whatever the
model's quality, and its interval is narrow when the model agrees with the points.

The interstitial fraction is a **ratio of two areas**,
``theta = A_int / (A_int + A_tub + A_glom) = E[a] / E[b]`` with, per pixel, ``a = 1[class =
interstitium]`` and ``b = 1[class in {interstitium, tubules, glomeruli}]``. Each mean gets its
PPI estimate, ``mu = mean_N(model) - mean_n(model - reference)``, and the ratio of the two is
``theta_pp = mu_a / mu_b``. The 95 % interval uses the **delta method**: linearising the ratio,

``Var(theta_pp) ~= Var_i(r_a,i - theta_pp * r_b,i) / (n * mu_b^2)``,  ``r = model - reference``
at point ``i``,

and ``theta_pp -+ 1.96 sqrt(Var)``, clipped to [0, 1]. The model term ``mean_N`` runs over all N
pixels of the domain (millions), so its own variance, ``O(1/N)``, is neglected.

**Rare disagreements** (``variance="wilson"``, the default). With the plain sample variance
(``variance="sample"``, the textbook PPI) a model that agrees with every point gets a zero-width
interval at its own value. That is exact for a perfect model, but a good model that disagrees
with 3 % of pixels agrees with all 50 points of a set one time in five, and those intervals
miss whenever the model is biased: coverage fell to 0.65 at 50 points in our benchmark
(docs/benchmarks.md). The default therefore estimates ``Var_i(psi)``, ``psi = r_a - theta r_b``,
as ``p~ m2 - (p~ m1)^2``, where ``p~ = (d + z^2/2) / (n + z^2)`` is the Wilson centre of the
disagreement rate (``d`` of the ``n`` points have ``psi != 0``) and ``m1``, ``m2`` are the mean
and mean square of ``psi`` over those ``d`` points (0 and 1 when ``d = 0``). For many
disagreements this equals the sample variance; with none it keeps a width of about
``2 z^2 / (n mu_b)``, which shrinks as ``1/n`` instead of being zero.

**Sampling assumption**: the points are a uniform sample (random, or a systematic grid with a
random offset) of the *domain* the model term is computed over. Two domains are used:

- ``"slide"`` when the points include points on glass (class ``background``): the whole label
  map (glass included), as :func:`histoseg.labels.points.grid_points_from_mask` draws them;
- ``"tissue"`` when no point is on glass (a pathologist counted tissue points only): the pixels
  the model calls tissue, and only the points on them. Tissue the model calls glass is then
  outside the estimand; the domain used is recorded in the report.

Example:
    >>> import numpy as np
    >>> est = ratio_ppi(0.5, 1.0, np.array([1, 0]), np.ones(2), np.array([1, 0]), np.ones(2), variance="sample")
    >>> est.estimate, est.ci_low, est.ci_high
    (0.5, 0.5, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

from histoseg import IGNORE_INDEX
from histoseg.report.point_counts import Z_95

__all__ = ["Z_95", "RatioEstimate", "Variance", "ppi_interstitial_fraction", "ratio_ppi"]


Domain = Literal["slide", "tissue"]

_FRACTION_CLASSES = ("interstitium", "tubules", "glomeruli")


class RatioEstimate(NamedTuple):
    """A prediction-powered estimate of a ratio of two means, with its delta-method interval.

    Attributes:
        estimate: ``mu_a / mu_b`` (nan when ``mu_b <= 0`` or no point was used).
        ci_low: Lower end of the interval, clipped to [0, 1].
        ci_high: Upper end of the interval, clipped to [0, 1].
        se: Delta-method standard error of the estimate.
        n: Number of points used.
        rectifier_num: ``mean_n(model_a - reference_a)``, the model's bias on the numerator.
        rectifier_den: ``mean_n(model_b - reference_b)``, the model's bias on the denominator.
    """

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    n: int
    rectifier_num: float
    rectifier_den: float


_NAN = RatioEstimate(math.nan, math.nan, math.nan, math.nan, 0, math.nan, math.nan)


Variance = Literal["wilson", "sample"]


def _influence_variance(psi: np.ndarray, variance: Variance, z: float) -> float:
    """Variance of the per-point influence ``psi`` (see the module docstring)."""
    n = psi.shape[0]
    if variance == "sample":
        return float(psi.var(ddof=1)) if n > 1 else math.inf
    off = psi[psi != 0]
    rate = (off.shape[0] + z * z / 2) / (n + z * z)
    m1 = float(off.mean()) if off.size else 0.0
    m2 = float((off**2).mean()) if off.size else 1.0
    return max(0.0, rate * m2 - (rate * m1) ** 2)


def ratio_ppi(
    model_num: float,
    model_den: float,
    point_model_num: np.ndarray,
    point_model_den: np.ndarray,
    point_ref_num: np.ndarray,
    point_ref_den: np.ndarray,
    z: float = Z_95,
    variance: Variance = "wilson",
) -> RatioEstimate:
    """PPI estimate of ``E[a] / E[b]`` from a model's means over the domain and labelled points.

    Args:
        model_num: The model's mean of ``a`` over the whole domain (e.g. fraction of pixels
            predicted interstitium), in [0, 1].
        model_den: The model's mean of ``b`` over the domain.
        point_model_num: (n,) the model's ``a`` at each point (0/1, or a probability).
        point_model_den: (n,) the model's ``b`` at each point.
        point_ref_num: (n,) the reference ``a`` at each point (0/1).
        point_ref_den: (n,) the reference ``b`` at each point (0/1).
        z: Normal quantile of the interval (1.96 for 95 %).
        variance: ``"wilson"`` (default: guarded against rare disagreements) or ``"sample"``
            (textbook PPI; zero width when the model agrees with every point).

    Returns:
        The estimate, its interval and standard error (see the module docstring for the formulas).
    """
    arrays = [np.asarray(v, dtype=np.float64).reshape(-1) for v in (point_model_num, point_model_den)]
    refs = [np.asarray(v, dtype=np.float64).reshape(-1) for v in (point_ref_num, point_ref_den)]
    n = arrays[0].shape[0]
    if not all(a.shape[0] == n for a in arrays + refs):
        raise ValueError("ratio_ppi: the four point arrays must have the same length")
    if n == 0:
        return _NAN
    r_num = arrays[0] - refs[0]
    r_den = arrays[1] - refs[1]
    mu_num = float(model_num) - float(r_num.mean())
    mu_den = float(model_den) - float(r_den.mean())
    if not mu_den > 0:
        return _NAN._replace(n=n, rectifier_num=float(r_num.mean()), rectifier_den=float(r_den.mean()))
    theta = mu_num / mu_den
    se = math.sqrt(_influence_variance(r_num - theta * r_den, variance, z) / (n * mu_den**2))
    low, high = theta - z * se, theta + z * se
    return RatioEstimate(
        estimate=theta,
        ci_low=min(1.0, max(0.0, low)),
        ci_high=min(1.0, max(0.0, high)),
        se=se,
        n=n,
        rectifier_num=float(r_num.mean()),
        rectifier_den=float(r_den.mean()),
    )


def _class_index(classes: Sequence[str], name: str) -> int:
    return list(classes).index(name)


def ppi_interstitial_fraction(
    counts: np.ndarray,
    point_model: np.ndarray,
    point_reference: np.ndarray,
    classes: Sequence[str],
    *,
    unlabelled_pixels: int = 0,
    background: str | None = "background",
    z: float = Z_95,
    variance: Variance = "wilson",
) -> tuple[RatioEstimate, Domain]:
    """PPI interstitial fraction of one slide from its label-map counts and its grid points.

    Args:
        counts: (C,) argmax pixel counts of the label map per class (index order of ``classes``).
        point_model: (n,) uint8 label-map value at each point (class index; 255 = unlabelled).
        point_reference: (n,) uint8 class of each point as counted by the observer.
        classes: Class names in label-index order; must include interstitium, tubules, glomeruli.
        unlabelled_pixels: Label-map pixels at 255 (outside every class); part of the slide domain.
        background: Name of the glass class (None when the model has none).
        z: Normal quantile of the interval.
        variance: See :func:`ratio_ppi`.

    Returns:
        ``(estimate, domain)``; ``domain`` is ``"slide"`` when some point is on glass, else
        ``"tissue"`` (see the module docstring).

    Raises:
        ValueError: ``classes`` lacks one of interstitium, tubules, glomeruli.
    """
    names = list(classes)
    missing = [c for c in _FRACTION_CLASSES if c not in names]
    if missing:
        raise ValueError(f"ppi_interstitial_fraction: classes lack {missing}")
    counts = np.asarray(counts, dtype=np.float64).reshape(-1)[: len(names)]
    model = np.asarray(point_model).astype(np.int64).reshape(-1)
    reference = np.asarray(point_reference).astype(np.int64).reshape(-1)
    if model.shape != reference.shape:
        raise ValueError("ppi_interstitial_fraction: point_model and point_reference differ in length")
    bg = _class_index(names, background) if background in names else None
    domain: Domain = "slide"
    total = float(counts.sum()) + float(unlabelled_pixels)
    if bg is not None and not np.any(reference == bg):
        domain = "tissue"
        keep = (model != bg) & (model != IGNORE_INDEX)
        model, reference = model[keep], reference[keep]
        total = float(counts.sum() - counts[bg])
    if not total > 0:
        return _NAN, domain
    i_int = _class_index(names, "interstitium")
    kidney = np.array([_class_index(names, c) for c in _FRACTION_CLASSES])
    estimate = ratio_ppi(
        counts[i_int] / total,
        counts[kidney].sum() / total,
        model == i_int,
        np.isin(model, kidney),
        reference == i_int,
        np.isin(reference, kidney),
        z=z,
        variance=variance,
    )
    return estimate, domain
