"""Interstitium: pale-pink fibrous strands between the tubules, sparse elongated nuclei, inflammatory cells."""

from __future__ import annotations

import numpy as np

from histoseg.synthetic.canvas import Canvas
from histoseg.synthetic.cells import TubuleCells
from histoseg.synthetic.fields import hex_grid, sample_at
from histoseg.synthetic.layout import Grid, Outline
from histoseg.synthetic.nuclei import Nuclei
from histoseg.synthetic.params import INTERSTITIUM


def paint_interstitium(canvas: Canvas, fib: float) -> None:
    """Paint the interstitium pixels pale with thin pink fibres (denser with fibrosis ``fib``), in place."""
    idx = np.flatnonzero(canvas.labels == INTERSTITIUM)
    nm = canvas.noise_med.reshape(-1)[idx]
    fibres = np.clip(1.0 - np.abs(nm) / (0.12 + 0.25 * fib), 0, 1)
    canvas.maps.p.reshape(-1)[idx] = 0.05 + 0.08 * fib + (0.12 + 0.2 * fib) * fibres
    canvas.maps.c.reshape(-1)[idx] = (
        0.10 + 0.15 * fib + 0.08 * fibres + 0.03 * canvas.noise_fine.reshape(-1)[idx]
    )
    canvas.comp.reshape(-1)[idx] = 0


def interstitial_nuclei(
    rng: np.random.Generator, grid: Grid, outline: Outline, cells: TubuleCells, fib: float, nuclei: Nuclei
) -> None:
    """Add the interstitial nuclei: sparse, elongated along the tubule surfaces.

    With fibrosis ``fib`` > 0, round inflammatory cells are added too.
    """
    gum = grid.gum
    pts = hex_grid(rng, grid.width_um, grid.height_um, 14.0, 0.45)
    pts = pts[_in_interstitium(pts, gum, outline, cells) & (rng.random(len(pts)) < 0.5 + 0.3 * fib)]
    gyf, gxf = np.gradient(cells.f_tub)
    tangent = np.arctan2(sample_at(gyf, pts, gum), sample_at(gxf, pts, gum)) + np.pi / 2
    del gyf, gxf
    n = len(pts)
    nuclei.add(pts[:, 0], pts[:, 1], rng.uniform(3.2, 4.6, n), rng.uniform(1.0, 1.5, n), tangent, 1.1, 0)
    if fib > 0:
        pts = hex_grid(rng, grid.width_um, grid.height_um, 7.0, 0.45)
        pts = pts[_in_interstitium(pts, gum, outline, cells) & (rng.random(len(pts)) < 0.45 * fib)]
        r = rng.uniform(1.9, 2.4, len(pts))
        nuclei.add(pts[:, 0], pts[:, 1], r, r, 0.0, 1.5, 0)


def _in_interstitium(pts: np.ndarray, gum: float, outline: Outline, cells: TubuleCells) -> np.ndarray:
    """(N,) bool: points (x, y) um inside the tissue, off the tubules and clear of the structures."""
    return (
        (sample_at(outline.d_tissue, pts, gum) > 2)
        & ~sample_at(cells.inside, pts, gum)
        & (sample_at(cells.d_obst, pts, gum) > 1)
    )
