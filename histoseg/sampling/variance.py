"""The variance of a design-weighted mean, for each sampling design.

A :class:`DesignSample` says how ``n`` points were drawn; :func:`design_mean` is the unbiased
mean of a per-point variable under that design and :func:`design_variance` estimates its
variance from the points (docs/methods.md, "Counting points"):

- ``random`` (points uniform over the frame): ``s² / n``;
- ``stratified`` (``n_h`` uniform points in stratum ``h`` of area share ``W_h``):
  ``sum_h W_h² s_h² / n_h`` (Cochran 1977, eq. 5.6);
- ``grid`` (a systematic grid with a uniform random offset): no unbiased estimator exists for a
  single systematic sample. The default is Matérn's local estimator (Matérn, *Spatial Variation*,
  1986, section 7.3): for every 2 x 2 block of neighbouring grid points the contrast
  ``T = u1 - u2 - u3 + u4`` removes any linear trend and a constant, ``E[T²] = 4 sigma²`` for
  uncorrelated values, and ``v = mean(T²) / 4 / n``. On tissue, where neighbouring points tend to
  fall in the same structure, it is smaller than ``s² / n`` but still conservative: the contrast
  keeps the short-range (boundary) variation that the grid's regularity averages out. A grid with
  fewer than five complete blocks (thin tissue) uses differences of neighbouring pairs
  (``mean(d²) / 2 / n``), and with fewer than five pairs ``s² / n``.

**Rare values** (``guard=True``, the default). A variable that is almost constant (a stratum the
model called tubules, where 1 point in 20 is not tubule; the disagreements of a good model) often
shows no variation at all in a small sample, and its sample variance is then 0: the interval would
have zero width exactly when it is least informed. Each variance is therefore bounded below as
histoseg's PPI interval has been since issue 12: with ``d`` of ``m`` values (deviations from the
most common value, block contrasts or pair differences) non-zero, the rate ``p~ = (d + z²/2) /
(m + z²)`` (the centre of the Wilson interval of ``d / m``) times the mean square of the non-zero
values (1, the largest a deviation of 0/1 indicators reaches, when none is seen) is a floor for
the variance of one value.

Example:
    >>> import numpy as np
    >>> from histoseg.sampling.variance import DesignSample, design_mean, design_variance
    >>> sample = DesignSample.stratified(np.array([0, 0, 1, 1]), np.array([0.25, 0.75]))
    >>> design_mean(sample, np.array([1.0, 3.0, 10.0, 20.0]))
    11.75
    >>> round(design_variance(sample, np.array([1.0, 3.0, 10.0, 20.0]), guard=False), 4)
    14.125
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Z_95 = 1.959963984540054
"""Two-sided 95 % standard normal quantile."""

Kind = Literal["random", "grid", "stratified"]
GridVariance = Literal["matern", "pairs", "random"]


@dataclass(frozen=True)
class DesignSample:
    """How ``n`` counted points were drawn.

    Attributes:
        kind: ``random``, ``grid`` or ``stratified``.
        stratum: (n,) int64 stratum of each point (all 0 unless stratified).
        weights: (H,) area share ``W_h`` of each stratum (``[1.0]`` unless stratified).
        lattice: (n, 2) int64 grid indices ``(i, j)`` of each point (grid only).
        grid_variance: The grid's variance estimator: ``matern`` (default), ``pairs`` or
            ``random`` (treat the grid as random points: the binomial variance, conservative).
    """

    kind: Kind
    stratum: np.ndarray
    weights: np.ndarray
    lattice: np.ndarray | None = None
    grid_variance: GridVariance = "matern"

    def __post_init__(self) -> None:
        object.__setattr__(self, "stratum", np.asarray(self.stratum, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "weights", np.asarray(self.weights, dtype=np.float64).reshape(-1))
        if self.lattice is not None:
            object.__setattr__(self, "lattice", np.asarray(self.lattice, dtype=np.int64).reshape(-1, 2))
            if self.lattice.shape[0] != self.stratum.shape[0]:
                raise ValueError("DesignSample: lattice and stratum lengths differ")
        if self.kind == "grid" and self.lattice is None:
            raise ValueError("DesignSample: a grid sample needs the grid indices of its points")
        if self.stratum.size and (self.stratum.min() < 0 or self.stratum.max() >= self.weights.size):
            raise ValueError("DesignSample: a stratum index has no weight")

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.stratum.shape[0])

    @classmethod
    def random(cls, n: int) -> DesignSample:
        """``n`` points uniform over the frame."""
        return cls("random", np.zeros(n, np.int64), np.ones(1))

    @classmethod
    def grid(cls, lattice: np.ndarray, grid_variance: GridVariance = "matern") -> DesignSample:
        """Points of a systematic grid, given their (n, 2) integer grid indices."""
        lattice = np.asarray(lattice, dtype=np.int64).reshape(-1, 2)
        return cls("grid", np.zeros(lattice.shape[0], np.int64), np.ones(1), lattice, grid_variance)

    @classmethod
    def stratified(cls, stratum: np.ndarray, weights: Sequence[float] | np.ndarray) -> DesignSample:
        """Points drawn uniformly within strata of area shares ``weights``."""
        return cls("stratified", np.asarray(stratum), np.asarray(weights, dtype=np.float64))

    def subset(self, keep: np.ndarray) -> DesignSample:
        """The sample restricted to the points where ``keep`` is True (same design)."""
        keep = np.asarray(keep, dtype=bool)
        lattice = None if self.lattice is None else self.lattice[keep]
        return DesignSample(self.kind, self.stratum[keep], self.weights, lattice, self.grid_variance)


def design_mean(sample: DesignSample, y: np.ndarray) -> float:
    """Design-unbiased mean of ``y`` over the frame: ``sum_h W_h * mean(y in h)``.

    nan when a stratum of positive weight has no point.
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if sample.kind != "stratified":
        return float(y.mean()) if y.size else math.nan
    total = 0.0
    for h, w in enumerate(sample.weights.tolist()):
        if w <= 0:
            continue
        in_h = sample.stratum == h
        if not in_h.any():
            return math.nan
        total += w * float(y[in_h].mean())
    return total


def _floor(values: np.ndarray, count: int, z: float) -> float:
    """Guard of one value's variance: Wilson-centred rate of non-zero ``values`` x their mean square."""
    off = values[np.abs(values) > 1e-12]
    rate = (off.shape[0] + z * z / 2) / (count + z * z)
    m1 = float(off.mean()) if off.size else 0.0
    m2 = float((off**2).mean()) if off.size else 1.0
    return max(0.0, rate * m2 - (rate * m1) ** 2)


def _mode_floor(u: np.ndarray, z: float) -> float:
    """The guard's floor of one value's variance, around the most common value of ``u``."""
    values, counts = np.unique(np.round(u, 12), return_counts=True)
    return _floor(u - values[np.argmax(counts)], u.shape[0], z)


def _unit_variance(u: np.ndarray, guard: bool, z: float) -> float:
    """Sample variance of ``u`` (ddof 1), bounded below by the guard around its most common value."""
    if u.shape[0] < 2:
        return math.inf
    s2 = float(u.var(ddof=1))
    return max(s2, _mode_floor(u, z)) if guard else s2


def _neighbours(lattice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complete 2 x 2 blocks (m, 4) and neighbouring pairs (p, 2) of grid points, as point indices."""
    index = {(int(i), int(j)): k for k, (i, j) in enumerate(lattice.tolist())}
    blocks, pairs = [], []
    for k, (i, j) in enumerate(lattice.tolist()):
        right, below, diagonal = index.get((i + 1, j)), index.get((i, j + 1)), index.get((i + 1, j + 1))
        if right is not None:
            pairs.append((k, right))
        if below is not None:
            pairs.append((k, below))
        if right is not None and below is not None and diagonal is not None:
            blocks.append((k, right, below, diagonal))
    return np.array(blocks, np.int64).reshape(-1, 4), np.array(pairs, np.int64).reshape(-1, 2)


MIN_CONTRASTS = 5
"""Fewest 2 x 2 blocks (or pairs) a grid variance is estimated from; below, the next estimator."""


def _grid_variance(u: np.ndarray, lattice: np.ndarray, how: GridVariance, guard: bool, z: float) -> float:
    n = u.shape[0]
    blocks, pairs = _neighbours(lattice)
    if how == "matern" and blocks.shape[0] >= MIN_CONTRASTS:
        t = u[blocks[:, 0]] - u[blocks[:, 1]] - u[blocks[:, 2]] + u[blocks[:, 3]]
        s2 = float((t**2).mean()) / 4
        if guard:
            s2 = max(s2, _floor(t, t.shape[0], z) / 4)
        return s2 / n
    if how in ("matern", "pairs") and pairs.shape[0] >= MIN_CONTRASTS:
        d = u[pairs[:, 0]] - u[pairs[:, 1]]
        s2 = float((d**2).mean()) / 2
        if guard:
            s2 = max(s2, _floor(d, d.shape[0], z) / 2)
        return s2 / n
    return _unit_variance(u, guard, z) / n


def design_variance(
    sample: DesignSample, u: np.ndarray, *, guard: bool = True, z: float = Z_95, floor_only: bool = False
) -> float:
    """Estimated variance of :func:`design_mean` of ``u`` (see the module docstring).

    Args:
        sample: The design of the points.
        u: (n,) the variable (for a ratio, its linearisation ``a - R b``).
        guard: Bound each variance below for rarely non-zero variables (module docstring).
        z: The interval's normal quantile (used by the guard).
        floor_only: Return the guard's floors alone, in place of the variances (stratified only).

    Returns:
        The variance (inf when a stratum of positive weight has fewer than 2 points).
    """
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    if u.shape[0] != sample.n:
        raise ValueError(f"design_variance: {u.shape[0]} values for {sample.n} points")
    if sample.kind == "random":
        return _unit_variance(u, guard, z) / max(sample.n, 1)
    if sample.kind == "grid":
        assert sample.lattice is not None
        return _grid_variance(u, sample.lattice, sample.grid_variance, guard, z)
    total = 0.0
    for h, w in enumerate(sample.weights.tolist()):
        if w <= 0:
            continue
        u_h = u[sample.stratum == h]
        if u_h.shape[0] < 2:
            return math.inf
        unit = _mode_floor(u_h, z) if floor_only else _unit_variance(u_h, guard, z)
        total += w * w * unit / u_h.shape[0]
    return total


def design_covariance(sample: DesignSample, u: np.ndarray, v: np.ndarray) -> float:
    """Estimated covariance of the design means of ``u`` and ``v`` (no guard; by polarisation)."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    plus = design_variance(sample, u + v, guard=False)
    minus = design_variance(sample, u - v, guard=False)
    return (plus - minus) / 4


__all__ = [
    "MIN_CONTRASTS",
    "Z_95",
    "DesignSample",
    "GridVariance",
    "Kind",
    "design_covariance",
    "design_mean",
    "design_variance",
]
