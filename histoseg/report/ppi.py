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
pixels of the domain (millions), so its own variance, ``O(1/N)``, is neglected. With a model
that agrees with every point the rectifier is zero, the variance is zero and the interval has
zero width at the model's value.

**Sampling assumption**: the points are a uniform sample (random, or a systematic grid with a
random offset) of the *domain* the model term is computed over. Two domains are used:

- ``"slide"`` when the points include points on glass (class ``background``): the whole label
  map (glass included), as :func:`histoseg.labels.points.grid_points_from_mask` draws them;
- ``"tissue"`` when no point is on glass (a pathologist counted tissue points only): the pixels
  the model calls tissue, and only the points on them. Tissue the model calls glass is then
  outside the estimand; the domain used is recorded in the report.

Example:
    >>> import numpy as np
    >>> est = ratio_ppi(0.5, 1.0, np.array([1, 0]), np.ones(2), np.array([1, 0]), np.ones(2))
    >>> est.estimate, est.ci_low, est.ci_high
    (0.5, 0.5, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

from histoseg import IGNORE_INDEX

__all__ = ["Z_95", "RatioEstimate", "ppi_interstitial_fraction", "ratio_ppi"]

Z_95 = 1.959963984540054
"""Two-sided 95 % normal quantile."""

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


def ratio_ppi(
    model_num: float,
    model_den: float,
    point_model_num: np.ndarray,
    point_model_den: np.ndarray,
    point_ref_num: np.ndarray,
    point_ref_den: np.ndarray,
    z: float = Z_95,
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
    influence = r_num - theta * r_den
    variance = float(influence.var(ddof=1)) / (n * mu_den**2) if n > 1 else math.inf
    se = math.sqrt(variance)
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
    )
    return estimate, domain
