"""Design-based estimators of the interstitial fraction from classified points.

The interstitial fraction is a ratio of two areas, ``R = A_int / (A_int + A_tub + A_glom)``. At
each counted point the pathologist's class gives ``a = 1[interstitium]`` and ``b = 1[interstitium,
tubules or glomeruli]``; the model's label map gives the same two indicators ``f_a``, ``f_b`` at the
point and their means ``F_a``, ``F_b`` over the whole counting frame. Every estimator here is a ratio
of two design-weighted means (:func:`~histoseg.sampling.variance.design_mean`), and its variance is
the design variance (:func:`~histoseg.sampling.variance.design_variance`) of its linearisation
(Taylor / delta method; Cochran 1977, section 6.11; Särndal, Swensson & Wretman 1992, section 5.6),
divided by the square of the denominator:

- :func:`point_counting`: ``R = mean(a) / mean(b)``; linearised ``u = a - R b``.
- :func:`post_stratified`: the points are grouped by the model's class under them (post-strata
  ``g`` with known area shares ``W_g`` from the label map), ``R = sum_g W_g mean_g(a) / sum_g W_g
  mean_g(b)`` - the estimator of area from a classified map and a reference sample (Olofsson et al.,
  Remote Sens. Environ. 2014; Stehman 2013) applied to the model's map; it corrects the model's
  confusion between classes, and its linearisation ``u = W_g n / n_g (z - mean_g z)``, ``z = a - R
  b``, only keeps the disagreement the model's class does not explain. A post-stratum with fewer
  than two points takes the model's value.
- :func:`prediction_powered`: PPI (Angelopoulos et al., Science 2023): ``R = (F_a - mean(f_a - a))
  / (F_b - mean(f_b - b))``; linearised ``psi = (f_a - a) - R (f_b - b)``; with ``power_tuned``,
  PPI++ (Angelopoulos, Duchi & Zrnic 2023): the model term is scaled by the ``lambda`` in [0, 1]
  that minimises the estimated variance, so a poor model is not worse than counting alone.
  **Cross-fitted PPI** (Zrnic & Candès, PNAS 2024) is the same function with ``f_a, f_b`` of each
  point taken from the model that did not see its fold and ``F_a, F_b`` averaged over the fold
  models.

For a stratified design ``mean`` is the stratified mean, so :func:`point_counting` of stratified
points is the stratified ratio estimator ``sum_h W_h mean_h(a) / sum_h W_h mean_h(b)``.

Example:
    >>> import numpy as np
    >>> from histoseg.sampling.variance import DesignSample
    >>> from histoseg.sampling.estimators import point_counting, prediction_powered
    >>> a, b = np.array([1, 0, 0, 1.0]), np.ones(4)
    >>> point_counting(DesignSample.random(4), a, b).estimate
    0.5
    >>> perfect = prediction_powered(DesignSample.random(4), a, b, a, b, 0.3, 1.0, guard=False)
    >>> perfect.estimate, perfect.ci_low, perfect.ci_high
    (0.3, 0.3, 0.3)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from histoseg.sampling.variance import Z_95, DesignSample, design_covariance, design_mean, design_variance


class FractionEstimate(NamedTuple):
    """An estimate of a ratio of areas with its 95 % interval.

    Attributes:
        method: ``point counting``, ``stratified``, ``post-stratified``, ``PPI``, ``PPI++`` or
            ``cross-fitted PPI``.
        estimate: The ratio (nan when it is undefined: no point in the three compartments).
        ci_low: Lower end of the interval (estimate - z se), clipped to [0, 1].
        ci_high: Upper end, clipped to [0, 1].
        se: Estimated standard error.
        n: Points used.
        variance: How the variance was estimated (``random``, ``stratified``, ``grid, Matérn``...).
        lam: The power-tuning weight of the model term (1 for PPI, 0 for counting).
    """

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    n: int
    method: str
    variance: str
    lam: float = 0.0

    @property
    def halfwidth(self) -> float:
        """Half the interval's width (after clipping)."""
        return (self.ci_high - self.ci_low) / 2


def _variance_name(sample: DesignSample) -> str:
    if sample.kind == "grid":
        return {"matern": "grid, Matérn", "pairs": "grid, pair differences", "random": "grid as random"}[
            sample.grid_variance
        ]
    return sample.kind


def _result(
    estimate: float, variance: float, n: int, method: str, sample: DesignSample, z: float, lam: float = 0.0
) -> FractionEstimate:
    if not (math.isfinite(estimate) and variance >= 0):
        return FractionEstimate(math.nan, math.nan, math.nan, math.nan, n, method, _variance_name(sample), lam)
    se = math.sqrt(variance) if math.isfinite(variance) else math.inf
    low = min(1.0, max(0.0, estimate - z * se))
    high = min(1.0, max(0.0, estimate + z * se))
    return FractionEstimate(estimate, low, high, se, n, method, _variance_name(sample), lam)


def point_counting(
    sample: DesignSample, a: np.ndarray, b: np.ndarray, *, guard: bool = True, z: float = Z_95
) -> FractionEstimate:
    """``R = mean(a) / mean(b)`` under the design (the stratified ratio estimator for strata).

    Args:
        sample: The points' design.
        a: (n,) 1 where the pathologist's class is interstitium.
        b: (n,) 1 where it is interstitium, tubules or glomeruli.
        guard: See :mod:`histoseg.sampling.variance`.
        z: Normal quantile of the interval.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    method = "stratified" if sample.kind == "stratified" else "point counting"
    num, den = design_mean(sample, a), design_mean(sample, b)
    if not den > 0:
        return _result(math.nan, math.nan, sample.n, method, sample, z)
    ratio = num / den
    variance = design_variance(sample, a - ratio * b, guard=guard, z=z) / den**2
    return _result(ratio, variance, sample.n, method, sample, z)


def post_stratified(
    sample: DesignSample,
    a: np.ndarray,
    b: np.ndarray,
    post: np.ndarray,
    post_weights: np.ndarray,
    post_a: np.ndarray,
    post_b: np.ndarray,
    *,
    guard: bool = True,
    z: float = Z_95,
    minimum: int = 2,
) -> FractionEstimate:
    """The ratio post-stratified by the model's class under each point.

    A post-stratum with fewer than ``minimum`` points has no usable mean of its own: it takes the
    model's value (``post_a``, ``post_b``; for a class stratum, the class itself) instead of being
    merged into another stratum, whose mean would then be wrongly applied to it (glass merged into
    interstitium would count glass as interstitium). Its share of the error is the model's error on
    that small area, which the interval does not include.

    Args:
        sample: The points' design (random or grid; a stratified design is already stratified).
        a, b: (n,) the pathologist's indicators (see :func:`point_counting`).
        post: (n,) int post-stratum of each point (the model's class under it).
        post_weights: (G,) area share of each post-stratum over the frame (the model's map).
        post_a, post_b: (G,) the model's ``a`` and ``b`` in each post-stratum (1 where its class is
            interstitium, resp. one of the three compartments; 0 elsewhere).
        guard: See :mod:`histoseg.sampling.variance`.
        z: Normal quantile.
        minimum: Fewest points for a post-stratum's own mean.
    """
    if sample.kind == "stratified":
        raise ValueError("post_stratified: a stratified sample is estimated with point_counting")
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    post = np.asarray(post, dtype=np.int64)
    weights = np.asarray(post_weights, dtype=np.float64)
    counts = np.bincount(post, minlength=weights.size)[: weights.size]
    dense = (weights > 0) & (counts >= minimum)
    sparse = (weights > 0) & ~dense
    known_a = float(np.sum(weights[sparse] * np.asarray(post_a, dtype=np.float64)[sparse]))
    known_b = float(np.sum(weights[sparse] * np.asarray(post_b, dtype=np.float64)[sparse]))
    strata = DesignSample.stratified(post, np.where(dense, weights, 0.0))
    num = design_mean(strata, a) + known_a
    den = design_mean(strata, b) + known_b
    if not (den > 0 and math.isfinite(num)):
        return _result(math.nan, math.nan, sample.n, "post-stratified", sample, z)
    ratio = num / den
    zlin = a - ratio * b
    u = np.zeros_like(zlin)
    for g in np.flatnonzero(dense):
        in_g = post == g
        u[in_g] = (zlin[in_g] - zlin[in_g].mean()) * weights[g] * sample.n / counts[g]
    # Conditional on the post-strata counts (Cochran 5A.9): the stratified variance, each post-stratum
    # guarded on its own (a stratum whose few points all agree with the model is not thereby pure).
    within = design_variance(strata, zlin, guard=guard, z=z)
    if sample.kind == "grid":
        floor = design_variance(strata, zlin, guard=guard, z=z, floor_only=True) if guard else 0.0
        within = max(design_variance(sample, u, guard=guard, z=z), floor)
    return _result(ratio, within / den**2, sample.n, "post-stratified", sample, z)


def prediction_powered(
    sample: DesignSample,
    a: np.ndarray,
    b: np.ndarray,
    f_a: np.ndarray,
    f_b: np.ndarray,
    model_a: float,
    model_b: float,
    *,
    power_tuned: bool = False,
    cross_fitted: bool = False,
    guard: bool = True,
    z: float = Z_95,
) -> FractionEstimate:
    """PPI (or PPI++) ratio: the model's areas corrected by its disagreement at the points.

    Args:
        sample: The points' design.
        a, b: (n,) the pathologist's indicators (see :func:`point_counting`).
        f_a, f_b: (n,) the model's indicators at the points (0/1, or probabilities).
        model_a, model_b: The model's means of ``f_a``, ``f_b`` over the whole frame.
        power_tuned: Scale the model term by the variance-minimising ``lambda`` in [0, 1].
        cross_fitted: Only names the method (``f`` of each point comes from a fold model).
        guard: See :mod:`histoseg.sampling.variance`.
        z: Normal quantile.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    f_a, f_b = np.asarray(f_a, dtype=np.float64), np.asarray(f_b, dtype=np.float64)
    lam = 1.0
    if power_tuned:
        base = point_counting(sample, a, b, guard=False).estimate
        if not math.isfinite(base):
            base = model_a / model_b if model_b > 0 else 0.0
        g = f_a - base * f_b
        var_g = design_variance(sample, g, guard=False)
        cov = design_covariance(sample, a - base * b, g)
        lam = float(np.clip(cov / var_g, 0.0, 1.0)) if var_g > 0 and math.isfinite(var_g) else 0.0
    method = "cross-fitted PPI" if cross_fitted else ("PPI++" if power_tuned else "PPI")
    r_a, r_b = lam * f_a - a, lam * f_b - b
    num = lam * float(model_a) - design_mean(sample, r_a)
    den = lam * float(model_b) - design_mean(sample, r_b)
    if not (den > 0 and math.isfinite(num)):
        return _result(math.nan, math.nan, sample.n, method, sample, z, lam)
    ratio = num / den
    variance = design_variance(sample, r_a - ratio * r_b, guard=guard, z=z) / den**2
    return _result(ratio, variance, sample.n, method, sample, z, lam)


def points_needed(estimate: FractionEstimate, target_halfwidth: float, z: float = Z_95) -> int | None:
    """Points that would bring the interval to ``target_halfwidth``, from the current variance.

    Assumes the variance falls as ``1/n`` (true for random and stratified points; a grid's falls
    faster, so the figure is an upper bound there): ``n * (z se / target)²``, rounded up, and never
    fewer than the points already counted. None when the estimate is undefined.
    """
    if not (math.isfinite(estimate.se) and estimate.n > 0 and target_halfwidth > 0):
        return None
    needed = math.ceil(estimate.n * (z * estimate.se / target_halfwidth) ** 2 - 1e-9)
    return max(needed, estimate.n)


__all__ = ["FractionEstimate", "point_counting", "points_needed", "post_stratified", "prediction_powered"]
