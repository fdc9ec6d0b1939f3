"""Glomeruli: a lobulated capillary tuft inside Bowman's capsule with a thin urinary space (all labelled)."""

from __future__ import annotations

import math

import numpy as np

from histoseg.synthetic.canvas import Patch
from histoseg.synthetic.fields import harmonics, hex_grid, wobble
from histoseg.synthetic.layout import Structure
from histoseg.synthetic.nuclei import Nuclei
from histoseg.synthetic.params import GLOMERULI

PARIETAL_OFFSET = 1_000_000
"""Added to a glomerulus's compartment id for its parietal (capsule) cells."""


def paint_glomerulus(rng: np.random.Generator, patch: Patch, fib: float, nuclei: Nuclei) -> None:
    """Paint a glomerulus over its patch in place and add its tuft and parietal nuclei.

    The tuft is magenta matrix with pale capillaries, inside a thin urinary space and the
    capsule wall; fibrosis ``fib`` thickens the capsule and widens the urinary space.
    """
    obj, inside, theta, r_um = patch.obj, patch.inside, patch.theta, patch.r_um
    patch.labels[inside] = GLOMERULI
    capsule_w = 1.0 + 1.0 * fib
    space = rng.uniform(3.0, 6.0) * (1 + 1.5 * fib)
    pole = rng.uniform(-np.pi, np.pi)
    lobes = wobble(theta, harmonics(rng, 4, 9, 0.06))
    gap_t = space * (0.1 + 0.9 * (1 - np.cos(theta - pole)) / 2)
    tuft_r = obj.radius - capsule_w - gap_t + lobes * obj.radius
    tuft = inside & (r_um < tuft_r)
    wall = inside & (r_um > obj.radius - capsule_w)
    urinary = inside & ~tuft & ~wall
    capillary = np.clip((patch.nm - 0.2) / 0.6, 0, 1)
    matrix = 1 - capillary
    h_box, p_box, cy_box = patch.h, patch.p, patch.c
    p_box[tuft] = (0.05 + (0.3 + 0.35 * fib) * matrix * (1 + 0.15 * patch.nf))[tuft]
    cy_box[tuft] = (0.15 + 0.4 * matrix)[tuft]
    h_box[tuft] = (0.12 * matrix)[tuft]
    h_box[urinary], p_box[urinary], cy_box[urinary] = 0.0, 0.04, 0.03
    h_box[wall], p_box[wall], cy_box[wall] = 0.0, 0.75 + 0.4 * fib, 0.2
    patch.comp[tuft] = obj.ident
    parietal = inside & ~tuft & (r_um > obj.radius - capsule_w - 2.0)
    patch.comp[parietal] = obj.ident + PARIETAL_OFFSET
    _glomerular_nuclei(rng, obj, space, capsule_w, nuclei)


def _glomerular_nuclei(
    rng: np.random.Generator, obj: Structure, space: float, capsule_w: float, nuclei: Nuclei
) -> None:
    """Tuft nuclei (dense) and parietal nuclei (flat, along the capsule)."""
    pts = hex_grid(rng, 2 * obj.radius, 2 * obj.radius, 5.4, 0.35) + [
        obj.x - obj.radius,
        obj.y - obj.radius,
    ]
    dist = np.hypot(pts[:, 0] - obj.x, pts[:, 1] - obj.y)
    pts = pts[(dist < obj.radius * obj.aspect - space - 2) & (rng.random(len(pts)) < 0.65)]
    r = rng.uniform(2.0, 2.6, len(pts))
    nuclei.add(pts[:, 0], pts[:, 1], r * 1.12, r, rng.uniform(0, np.pi, len(pts)), 1.1, obj.ident)
    n_par = int(2 * np.pi * obj.radius / 16)
    ang = rng.uniform(0, 2 * np.pi, n_par)
    rr = obj.radius * obj.aspect - capsule_w - 0.9
    cos_a, sin_a = math.cos(obj.angle), math.sin(obj.angle)
    px_, py_ = rr * np.cos(ang), rr * np.sin(ang)
    nuclei.add(
        obj.x + px_ * cos_a - py_ * sin_a,
        obj.y + px_ * sin_a + py_ * cos_a,
        3.2,
        0.9,
        ang + obj.angle + np.pi / 2,
        1.2,
        obj.ident + PARIETAL_OFFSET,
    )
