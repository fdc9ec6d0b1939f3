"""Tubules: per-tubule properties, the epithelium painting, and the tubular nuclei.

Each tubule is an epithelial ring with a thin magenta basement membrane, a magenta
PAS-positive brush border around a narrow lumen (proximal) or an open lumen (distal),
and round blue-purple nuclei mid-epithelium; atrophic tubules (with fibrosis) have a
flat epithelium, a thick membrane and no brush border.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histoseg.synthetic.canvas import Canvas
from histoseg.synthetic.cells import TubuleCells
from histoseg.synthetic.fields import hex_grid, resize_bilinear, sample_at
from histoseg.synthetic.layout import Grid
from histoseg.synthetic.nuclei import Nuclei
from histoseg.synthetic.params import TissueParams


@dataclass
class TubuleProperties:
    """Per-tubule properties, (n_tub + 1,) arrays indexed by tubule instance id (entry 0 unused).

    Attributes:
        distal: bool, distal tubule (open lumen, no brush border).
        atrophic: bool, atrophic tubule.
        thick: float32 epithelium thickness, um.
        brush: float32 brush border thickness, um (0 = none).
        membrane: float32 basement membrane thickness, um.
        cyto_c: float32 cytoplasm stain of the epithelium.
        cyto_p: float32 PAS stain of the epithelium.
        brush_p: float32 PAS stain of the brush border.
        lumen_rough: float32 roughness of the lumen outline (scale of the medium noise), um.
    """

    distal: np.ndarray
    atrophic: np.ndarray
    thick: np.ndarray
    brush: np.ndarray
    membrane: np.ndarray
    cyto_c: np.ndarray
    cyto_p: np.ndarray
    brush_p: np.ndarray
    lumen_rough: np.ndarray


def tubule_properties(rng: np.random.Generator, cells: TubuleCells, tissue: TissueParams) -> TubuleProperties:
    """Draw each tubule's kind (proximal, distal, atrophic), thicknesses and stains."""
    n = cells.n_tub + 1
    fib = float(tissue.fibrosis)
    distal = rng.random(n) < tissue.distal_fraction
    atrophic = rng.random(n) < fib
    frac = np.where(distal, rng.uniform(0.45, 0.6, n), rng.uniform(0.72, 0.9, n))
    frac = np.where(atrophic, rng.uniform(0.35, 0.5, n), frac)
    thick = (frac * cells.r_in).astype(np.float32)
    brush = np.where(distal | atrophic, 0.0, rng.uniform(2.6, 4.0, n)).astype(np.float32)
    membrane = np.where(atrophic, rng.uniform(1.4, 2.2, n), 0.65 + 0.8 * fib).astype(np.float32)
    cyto_c = (np.where(distal, 0.62, 0.75) * rng.uniform(0.85, 1.12, n)).astype(np.float32)
    cyto_c = np.where(atrophic, 0.75, cyto_c).astype(np.float32)
    cyto_p = (np.where(distal, 0.06, 0.03) * rng.uniform(0.8, 1.2, n)).astype(np.float32)
    brush_p = rng.uniform(0.35, 0.55, n).astype(np.float32)
    lumen_rough = np.where(distal | atrophic, 0.5, 1.6).astype(np.float32)
    return TubuleProperties(
        distal=distal,
        atrophic=atrophic,
        thick=thick,
        brush=brush,
        membrane=membrane,
        cyto_c=cyto_c,
        cyto_p=cyto_p,
        brush_p=brush_p,
        lumen_rough=lumen_rough,
    )


def paint_tubules(
    canvas: Canvas, grid: Grid, cells: TubuleCells, props: TubuleProperties, fib: float
) -> None:
    """Paint basement membrane, epithelium, brush border and lumen of every tubule pixel, in place.

    Lumen, membrane and brush border pixels get no nucleus compartment; epithelium pixels
    get their tubule's id.
    """
    shape, g = grid.shape, grid.g
    # painting works on flat views and flat indices (several times faster than 2-D fancy indexing)
    idx = np.flatnonzero(canvas.tubules)
    ti = canvas.tubules.reshape(-1)[idx]
    nf = canvas.noise_fine.reshape(-1)[idx]
    f_tub = resize_bilinear(cells.f_tub, shape, g).reshape(-1)[idx]
    edge = np.minimum(resize_bilinear(cells.d_in, shape, g).reshape(-1)[idx], np.maximum(f_tub, 0))
    din = resize_bilinear(cells.d_lum, shape, g).reshape(-1)[idx]
    brush = props.brush[ti]
    t_edge = props.thick[ti] + props.lumen_rough[ti] * canvas.noise_med.reshape(-1)[idx]
    lumen = din > t_edge
    border = (din > t_edge - brush) & ~lumen
    bm = edge < props.membrane[ti]
    grain = 1.0 + 0.16 * nf
    tc = props.cyto_c[ti] * grain
    tp = props.cyto_p[ti] * grain
    th = np.full(tc.shape, 0.02, np.float32)
    depth_in_border = np.clip((din - (t_edge - brush)) / np.maximum(brush, 1e-3), 0, 1)
    fuzz = np.clip(0.9 + 0.35 * nf - 0.3 * depth_in_border, 0.3, 1.0)
    tp = np.where(border, tp + props.brush_p[ti] * fuzz, tp)
    tc = np.where(border, tc * 0.55, tc)
    debris = np.clip(nf - 0.5, 0, None) * 0.35 * (brush > 0)
    tc = np.where(lumen, 0.02, tc)
    th = np.where(lumen, 0.0, th)
    tp = np.where(lumen, 0.03 + debris, tp)
    tp = np.where(bm, (0.5 + 0.3 * fib) * (1 + 0.1 * nf), tp)
    tc = np.where(bm, 0.3, tc)
    maps = canvas.maps
    maps.h.reshape(-1)[idx], maps.p.reshape(-1)[idx], maps.c.reshape(-1)[idx] = th, tp, tc
    canvas.comp.reshape(-1)[idx] = np.where(lumen | bm | border, -1, ti)


def tubular_nuclei(
    rng: np.random.Generator, grid: Grid, cells: TubuleCells, props: TubuleProperties, nuclei: Nuclei
) -> None:
    """Add the tubular nuclei: mid-epithelium, on a jittered grid (round; small and dark when atrophic)."""
    gum = grid.gum
    pts = hex_grid(rng, grid.width_um, grid.height_um, 7.5, 0.3)
    pi_ = sample_at(cells.inst, pts, gum)
    is_tub = (pi_ >= 1) & sample_at(cells.inside, pts, gum)
    pts, pi_ = pts[is_tub], pi_[is_tub]
    depth = sample_at(cells.d_lum, pts, gum)
    t_pts = props.thick[pi_] - props.brush[pi_]
    centre = np.where(props.distal[pi_], 0.5, 0.42) * t_pts
    band = np.abs(depth - centre) < np.maximum(0.22 * t_pts, 1.2)
    band &= rng.random(len(pts)) < np.where(props.distal[pi_], 0.9, 0.7)
    pts, pi_ = pts[band], pi_[band]
    n = len(pts)
    atrophic = props.atrophic[pi_]
    rad = np.where(atrophic, rng.uniform(2.0, 2.5, n), rng.uniform(2.8, 3.4, n))
    nuclei.add(
        pts[:, 0],
        pts[:, 1],
        rad * rng.uniform(1.0, 1.12, n),
        rad,
        rng.uniform(0, np.pi, n),
        rng.uniform(0.6, 0.78, n) * np.where(atrophic, 1.4, 1.0),
        pi_,
    )
