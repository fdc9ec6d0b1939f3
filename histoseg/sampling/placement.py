"""Where the points go: systematic grids with a random offset, random and stratified random points.

Every function places points over a :class:`~histoseg.sampling.frame.CountingFrame` in level-0
pixels of the slide, so that each position of the frame has the same chance of being counted
(uniform random, and a grid whose offset is uniform over one grid cell) or the same chance within
its stratum (stratified).

- :func:`square_lattice` chooses the grid for about ``n`` points on the frame: spacing
  ``s = sqrt(frame area / n)``, offset uniform in ``[0, s)²``;
- :func:`lattice_points` lists the grid's nodes on the frame with their integer grid indices;
- :func:`refine` halves the grid spacing along one axis (the wider one, x first): the refined
  grid contains every node of the old one, so a second round adds the new nodes only and the
  union is again one systematic grid (a nested design);
- :func:`random_points` / :func:`stratified_points` draw uniform points over the frame / within
  each stratum, never at a position already drawn.

Example:
    >>> import numpy as np
    >>> from histoseg.sampling.frame import CountingFrame
    >>> from histoseg.sampling.placement import Lattice, lattice_points, refine
    >>> frame = CountingFrame(np.zeros((4, 4), np.uint8), (25.0, 25.0), (100, 100), ("tissue",))
    >>> x, y, index = lattice_points(frame, Lattice((5.0, 5.0), (50.0, 50.0)))
    >>> x.tolist(), y.tolist()
    ([5.0, 55.0, 5.0, 55.0], [5.0, 5.0, 55.0, 55.0])
    >>> len(lattice_points(frame, refine(Lattice((5.0, 5.0), (50.0, 50.0))))[0])
    8
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from histoseg.sampling.frame import OUTSIDE, CountingFrame


class Lattice(NamedTuple):
    """A rectangular grid of points ``origin + (i * step_x, j * step_y)`` for all integers i, j.

    Attributes:
        origin: Level-0 ``(x, y)`` of node ``(0, 0)``, within one step of the slide's corner.
        step: Grid spacing ``(step_x, step_y)`` in level-0 pixels.
    """

    origin: tuple[float, float]
    step: tuple[float, float]


def square_lattice(frame: CountingFrame, n: int, rng: np.random.Generator) -> Lattice:
    """A square grid with about ``n`` nodes on the frame, its offset uniform over one grid cell.

    Args:
        frame: The counting frame.
        n: Points wanted (the count on the frame varies by a few with the offset).
        rng: Random generator (the offset).

    Returns:
        The lattice: spacing ``sqrt(area / n)`` level-0 px, origin uniform in ``[0, s)²``.
    """
    if n < 1:
        raise ValueError(f"square_lattice: n must be >= 1, got {n}")
    step = math.sqrt(frame.area() / n)
    ox, oy = rng.uniform(0.0, step, size=2)
    return Lattice((float(ox), float(oy)), (step, step))


def refine(lattice: Lattice) -> Lattice:
    """The lattice with half the spacing along its wider axis (x when equal); contains ``lattice``."""
    sx, sy = lattice.step
    step = (sx / 2, sy) if sx >= sy else (sx, sy / 2)
    return Lattice(lattice.origin, step)


def lattice_points(frame: CountingFrame, lattice: Lattice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lattice's nodes on the frame.

    Returns:
        ``(x, y, index)``: level-0 coordinates (n,), and (n, 2) int64 grid indices ``(i, j)`` of
        each node (``x = origin_x + i * step_x``), row-major (y, then x).
    """
    (ox, oy), (sx, sy) = lattice
    width, height = frame.slide_size
    i = np.arange(math.ceil((0 - ox) / sx), math.floor((width - 1e-9 - ox) / sx) + 1, dtype=np.int64)
    j = np.arange(math.ceil((0 - oy) / sy), math.floor((height - 1e-9 - oy) / sy) + 1, dtype=np.int64)
    jj, ii = np.meshgrid(j, i, indexing="ij")
    x = ox + ii.ravel() * sx
    y = oy + jj.ravel() * sy
    keep = frame.locate(x, y) != OUTSIDE
    index = np.stack([ii.ravel()[keep], jj.ravel()[keep]], axis=1)
    return x[keep], y[keep], index


def _cells_of(frame: CountingFrame, stratum: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    areas = frame.cell_areas()
    mask = frame.cells != OUTSIDE if stratum is None else frame.cells == stratum
    mask &= areas > 0
    rows, cols = np.nonzero(mask)
    return rows, cols, areas[rows, cols]


def _uniform_in_cells(
    frame: CountingFrame, n: int, rng: np.random.Generator, stratum: int | None
) -> tuple[np.ndarray, np.ndarray]:
    rows, cols, areas = _cells_of(frame, stratum)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    if rows.size == 0:
        raise ValueError("no cell of the frame (or stratum) to place points in")
    pick = rng.choice(rows.size, size=n, p=areas / areas.sum())
    cw, ch = frame.cell_size
    width, height = frame.slide_size
    x0, y0 = cols[pick] * cw, rows[pick] * ch
    x1, y1 = np.minimum(x0 + cw, width), np.minimum(y0 + ch, height)
    x = x0 + rng.uniform(0.0, 1.0, n) * (x1 - x0)
    y = y0 + rng.uniform(0.0, 1.0, n) * (y1 - y0)
    return x, y


def _fresh(
    frame: CountingFrame,
    n: int,
    rng: np.random.Generator,
    stratum: int | None,
    taken: set[tuple[float, float]],
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform points (rounded to 0.01 px) that are not in ``taken`` (which is updated)."""
    xs: list[float] = []
    ys: list[float] = []
    while len(xs) < n:
        x, y = _uniform_in_cells(frame, n - len(xs), rng, stratum)
        x, y = np.round(x, 2), np.round(y, 2)
        where = frame.locate(x, y)
        fits = where != OUTSIDE if stratum is None else where == stratum  # rounding may cross a cell edge
        for px, py, ok in zip(x.tolist(), y.tolist(), fits.tolist(), strict=True):
            if ok and (px, py) not in taken:
                taken.add((px, py))
                xs.append(px)
                ys.append(py)
    return np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64)


def random_points(
    frame: CountingFrame,
    n: int,
    rng: np.random.Generator,
    taken: set[tuple[float, float]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform over the frame's area, none at a position in ``taken``.

    Returns:
        ``(x, y)`` level-0 coordinates (rounded to 0.01 px).
    """
    return _fresh(frame, n, rng, None, set() if taken is None else taken)


def stratified_points(
    frame: CountingFrame,
    counts: np.ndarray,
    rng: np.random.Generator,
    taken: set[tuple[float, float]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``counts[h]`` points uniform over stratum ``h``, for every stratum.

    Returns:
        ``(x, y, stratum)``: level-0 coordinates and (n,) uint8 stratum of each point.
    """
    taken = set() if taken is None else taken
    xs, ys, hs = [], [], []
    for h, m in enumerate(np.asarray(counts, dtype=np.int64).tolist()):
        if m <= 0:
            continue
        x, y = _fresh(frame, m, rng, h, taken)
        xs.append(x)
        ys.append(y)
        hs.append(np.full(m, h, np.uint8))
    if not xs:
        return np.zeros(0), np.zeros(0), np.zeros(0, np.uint8)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(hs)


__all__ = [
    "Lattice",
    "lattice_points",
    "random_points",
    "refine",
    "square_lattice",
    "stratified_points",
]
