"""Vessels (class ``other``): arteries (thick muscular wall, elastic lamina, lumen) and veins (thin wall, wide lumen)."""

from __future__ import annotations

import math

import numpy as np

from histoseg.synthetic.canvas import Patch
from histoseg.synthetic.fields import hex_grid
from histoseg.synthetic.nuclei import Nuclei
from histoseg.synthetic.params import OTHER


def paint_artery(rng: np.random.Generator, patch: Patch, nuclei: Nuclei) -> None:
    """Paint an artery over its patch in place and add its nuclei.

    Lumen, elastic lamina, ringed media and adventitia; the media's smooth-muscle nuclei
    are elongated around the lumen.
    """
    obj, inside, rho, r_um, nm, nf = patch.obj, patch.inside, patch.rho, patch.r_um, patch.nm, patch.nf
    h_box, p_box, cy_box = patch.h, patch.p, patch.c
    patch.labels[inside] = OTHER
    lumen_frac = rng.uniform(0.35, 0.55)
    lumen = inside & (rho < lumen_frac)
    lamina = inside & ~lumen & (rho < lumen_frac + 1.3 / obj.radius)
    advent = inside & (rho > 1 - 3.0 / obj.radius)
    media = inside & ~lumen & ~lamina & ~advent
    rings = 0.5 + 0.5 * np.sin(r_um * 2.0 + 1.5 * nm)
    h_box[lumen], p_box[lumen], cy_box[lumen] = (
        0.0,
        (0.03 + 0.1 * np.clip(nm - 1.2, 0, None))[lumen],
        0.02,
    )
    h_box[lamina], p_box[lamina], cy_box[lamina] = 0.0, 0.95, 0.2
    h_box[media] = 0.0
    p_box[media] = (0.16 + 0.1 * rings + 0.03 * nf)[media]
    cy_box[media] = (0.75 + 0.1 * nf)[media]
    h_box[advent], p_box[advent], cy_box[advent] = 0.0, 0.55, 0.2
    patch.comp[media] = obj.ident
    pts = hex_grid(rng, 2 * obj.radius, 2 * obj.radius, 5.5, 0.3) + [
        obj.x - obj.radius,
        obj.y - obj.radius,
    ]
    dxp, dyp = pts[:, 0] - obj.x, pts[:, 1] - obj.y
    dist = np.hypot(dxp, dyp)
    sel = (dist > obj.radius * lumen_frac + 2.5) & (dist < obj.radius * obj.aspect - 3.5)
    sel &= rng.random(len(pts)) < 0.7
    nuclei.add(
        pts[sel, 0],
        pts[sel, 1],
        rng.uniform(3.2, 4.2, int(sel.sum())),
        1.1,
        np.arctan2(dyp[sel], dxp[sel]) + np.pi / 2,
        1.2,
        obj.ident,
    )


def paint_vein(rng: np.random.Generator, patch: Patch, nuclei: Nuclei) -> None:
    """Paint a vein over its patch in place and add its nuclei.

    A thin wall and a wide lumen with a few blood cells; flat endothelial nuclei along the wall.
    """
    obj, inside, rho, nm = patch.obj, patch.inside, patch.rho, patch.nm
    h_box, p_box, cy_box = patch.h, patch.p, patch.c
    patch.labels[inside] = OTHER
    wall_um = rng.uniform(1.5, 3.0)
    depth_v = (1.0 - rho) * obj.radius * obj.aspect  # approx. distance to the outline, um
    wall = inside & (depth_v < wall_um)
    lumen = inside & ~wall
    cells = np.clip(nm - 0.9, 0, None)
    h_box[lumen], p_box[lumen], cy_box[lumen] = (
        0.0,
        (0.03 + 0.15 * cells)[lumen],
        (0.02 + 0.1 * cells)[lumen],
    )
    h_box[wall], p_box[wall], cy_box[wall] = 0.0, 0.5, 0.25
    patch.comp[wall] = obj.ident
    n_end = int(2 * np.pi * obj.radius / 22)
    ang = rng.uniform(0, 2 * np.pi, n_end)
    cos_a, sin_a = math.cos(obj.angle), math.sin(obj.angle)
    px_ = (obj.radius - wall_um / 2) * np.cos(ang)
    py_ = (obj.radius * obj.aspect - wall_um / 2) * np.sin(ang)
    tang = np.arctan2(obj.radius * obj.aspect * np.cos(ang), -obj.radius * np.sin(ang)) + obj.angle
    nuclei.add(
        obj.x + px_ * cos_a - py_ * sin_a,
        obj.y + px_ * sin_a + py_ * cos_a,
        3.5,
        0.9,
        tang,
        1.25,
        obj.ident,
    )
