"""How many of ``n`` points each stratum gets.

Neyman allocation (Neyman, JRSS 1934; Cochran, *Sampling Techniques*, 3rd ed. 1977, section 5.5)
gives stratum ``h`` a share of the points proportional to ``W_h * S_h``, its area share times the
standard deviation of the counted variable inside it; that minimises the variance of a
stratified mean for a fixed number of points. Before any point is counted ``S_h`` is unknown, so
:data:`ANTICIPATED_IMPURITY` supplies a prior guess: strata the model called one class have a
small share of points of another class, strata on class boundaries a large one. After a round of
counting the counted points give ``S_h`` themselves (:func:`stratum_sd`). Every stratum gets at
least ``minimum`` points (2: a stratum's variance needs two), the rest is split by the largest
remainder method.

Example:
    >>> import numpy as np
    >>> from histoseg.sampling.allocation import allocate
    >>> allocate(np.array([0.5, 0.3, 0.2]), 20).tolist()
    [9, 6, 5]
    >>> allocate(np.array([0.5, 0.3, 0.2]), 20, sd=np.array([0.1, 0.1, 0.5])).tolist()
    [6, 4, 10]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from histoseg.errors import ConfigError

ANTICIPATED_IMPURITY = {"inside": 0.1, "edge": 0.35, "class": 0.2, "frame": 0.5}
"""Prior share of points of another class than the model's, by kind of stratum (before counting).

``inside``/``edge``: strata of ``class+edge`` (a class's interior / its boundary cells); ``class``:
strata of ``class``; ``frame``: one stratum. Background strata use a fifth of these (glass is
rarely tissue). Only the allocation uses them: a wrong guess costs width, never validity.
"""


def anticipated_sd(strata: Sequence[str], background: str | None = "background") -> np.ndarray:
    """(H,) prior standard deviation ``sqrt(e (1 - e))`` of each stratum, ``e`` from :data:`ANTICIPATED_IMPURITY`."""
    out = []
    for name in strata:
        words = name.split()
        kind = words[-1] if words and words[-1] in ("inside", "edge") else ("frame" if name == "frame" else "class")
        e = ANTICIPATED_IMPURITY[kind]
        if background is not None and words and words[0] == background:
            e /= 5
        out.append(math.sqrt(e * (1 - e)))
    return np.array(out, dtype=np.float64)


def stratum_sd(values: np.ndarray, stratum: np.ndarray, count: int) -> np.ndarray:
    """(H,) sample standard deviation of ``values`` in each stratum (nan with fewer than 2 points)."""
    out = np.full(count, math.nan)
    for h in range(count):
        v = values[stratum == h]
        if v.size >= 2:
            out[h] = float(v.std(ddof=1))
    return out


def allocate(
    weights: np.ndarray, n: int, sd: np.ndarray | None = None, minimum: int = 2
) -> np.ndarray:
    """Points per stratum: ``minimum`` each, the rest proportional to ``W_h * S_h`` (Neyman).

    Args:
        weights: (H,) area shares ``W_h`` of the strata (strata with 0 get no point).
        n: Points in all.
        sd: (H,) standard deviations ``S_h`` (None: proportional allocation, ``S_h = 1``).
            Non-finite values are replaced by the largest finite one (or 1).
        minimum: Points every stratum with ``W_h > 0`` gets at least.

    Returns:
        (H,) int64 points per stratum, summing to ``n``.

    Raises:
        ConfigError: ``n`` is smaller than ``minimum`` times the number of strata.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    active = w > 0
    need = minimum * int(active.sum())
    if n < need:
        raise ConfigError(
            f"--n {n}: the {int(active.sum())} strata need at least {minimum} points each ({need}); "
            f"give --n {need} or more, or fewer strata (--strata class or none)"
        )
    s = np.ones_like(w) if sd is None else np.asarray(sd, dtype=np.float64).reshape(-1).copy()
    finite = np.isfinite(s) & (s >= 0)
    fill = float(s[finite].max()) if finite.any() and s[finite].max() > 0 else 1.0
    s[~finite] = fill
    s = np.maximum(s, 1e-3 * fill)  # a stratum that looked pure may not be: never a zero share
    counts = np.where(active, minimum, 0).astype(np.int64)
    rest = n - need
    if rest > 0:
        score = np.where(active, w * s, 0.0)
        quota = score / score.sum() * rest
        base = np.floor(quota).astype(np.int64)
        counts += base
        left = rest - int(base.sum())
        order = np.argsort(-(quota - base), kind="stable")
        counts[order[:left]] += 1
    return counts


__all__ = ["ANTICIPATED_IMPURITY", "allocate", "anticipated_sd", "stratum_sd"]
