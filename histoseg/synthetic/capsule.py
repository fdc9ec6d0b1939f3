"""The renal capsule strip (class ``other``): a dense fibrous band with flat nuclei parallel to the surface."""

from __future__ import annotations

import numpy as np

from histoseg.synthetic.canvas import Canvas
from histoseg.synthetic.fields import hex_grid, resize_bilinear, sample_at
from histoseg.synthetic.layout import Grid, Outline
from histoseg.synthetic.nuclei import Nuclei
from histoseg.synthetic.params import OTHER


def paint_capsule(
    rng: np.random.Generator, canvas: Canvas, grid: Grid, outline: Outline, capsule_id: int, nuclei: Nuclei
) -> None:
    """Paint the capsule strip over whatever lies under it (label ``other``), in place, and add its nuclei.

    Args:
        rng: The slide's random generator.
        canvas: The canvas.
        grid: The slide's grids.
        outline: The tissue outline with the capsule width.
        capsule_id: Nucleus compartment of the capsule.
        nuclei: Collected nuclei (appended to).
    """
    gum = grid.gum
    cap_f = (resize_bilinear(outline.cap_width - outline.d_tissue, grid.shape, grid.g) > 0) & canvas.tissue
    idx = np.flatnonzero(cap_f)
    del cap_f
    canvas.labels.reshape(-1)[idx] = OTHER
    canvas.tubules.reshape(-1)[idx] = 0
    fibres = np.clip(1 - np.abs(canvas.noise_fine.reshape(-1)[idx]) / 0.6, 0, 1)
    maps = canvas.maps
    maps.p.reshape(-1)[idx] = 0.3 + 0.25 * fibres
    maps.c.reshape(-1)[idx] = 0.25
    maps.h.reshape(-1)[idx] = 0.0
    canvas.comp.reshape(-1)[idx] = capsule_id
    pts = hex_grid(rng, grid.width_um, grid.height_um, 9.0, 0.4)
    pts = pts[sample_at(outline.capsule, pts, gum) & (rng.random(len(pts)) < 0.6)]
    gyt, gxt = np.gradient(outline.d_tissue)
    along = np.arctan2(sample_at(gyt, pts, gum), sample_at(gxt, pts, gum)) + np.pi / 2
    nuclei.add(pts[:, 0], pts[:, 1], rng.uniform(3.5, 5.5, len(pts)), 0.9, along, 1.35, capsule_id)
