"""Layout of the synthetic cortex: the grids, the tissue outline with its capsule side, and the placed structures.

Everything here lives on the geometry grid (about 1 um per pixel) and in microns; the
random draws happen in the order the stages are called (the golden test pins it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from histoseg.synthetic.fields import harmonics, smooth_noise, wobble
from histoseg.synthetic.params import TissueParams


@dataclass(frozen=True)
class Grid:
    """The output grid and the coarser geometry grid of one slide.

    Attributes:
        shape: Output (H, W) in pixels.
        mpp: Microns per output pixel.
        g: Integer factor between the grids (geometry pixel = ``g`` output pixels, about 1 um).
        gum: Microns per geometry pixel (``g * mpp``).
        gshape: Geometry (Hg, Wg) = ``ceil(shape / g)``.
        width_um: Slide width in microns.
        height_um: Slide height in microns.
    """

    shape: tuple[int, int]
    mpp: float
    g: int
    gum: float
    gshape: tuple[int, int]
    width_um: float
    height_um: float


def make_grid(width: int, height: int, mpp: float) -> Grid:
    """Grids of a ``width`` x ``height`` pixel slide at ``mpp`` um per pixel."""
    H, W = int(height), int(width)
    g = max(1, int(round(1.0 / mpp)))
    return Grid(
        shape=(H, W),
        mpp=mpp,
        g=g,
        gum=g * mpp,
        gshape=(-(-H // g), -(-W // g)),
        width_um=W * mpp,
        height_um=H * mpp,
    )


@dataclass
class Outline:
    """The tissue outline on the geometry grid.

    Attributes:
        d_tissue: (Hg, Wg) float32 signed distance to the outline, um (> 0 inside).
        cap_width: (Hg, Wg) float32 width of the renal capsule strip under the outline, um (0 = none).
        capsule: (Hg, Wg) bool, the capsule strip.
        area_mm2: Tissue area, mm^2.
    """

    d_tissue: np.ndarray
    cap_width: np.ndarray
    capsule: np.ndarray
    area_mm2: float


def tissue_outline(rng: np.random.Generator, grid: Grid, tissue: TissueParams) -> Outline:
    """An irregular ellipse of tissue on glass, with a strip of capsule along part of it."""
    Hg, Wg = grid.gshape
    gum = grid.gum
    gy = ((np.arange(Hg, dtype=np.float32) + 0.5) * gum)[:, None]
    gx = ((np.arange(Wg, dtype=np.float32) + 0.5) * gum)[None, :]
    cx = grid.width_um * (0.5 + rng.uniform(-0.04, 0.04))
    cy = grid.height_um * (0.5 + rng.uniform(-0.04, 0.04))
    ax = 0.5 * grid.width_um * tissue.tissue_extent
    ay = 0.5 * grid.height_um * tissue.tissue_extent
    theta_t = np.arctan2((gy - cy) / ay, (gx - cx) / ax)
    rho_t = np.sqrt(((gx - cx) / ax) ** 2 + ((gy - cy) / ay) ** 2)
    outline = 1.0 + wobble(theta_t, harmonics(rng, 2, 7, 0.07))
    scale_t = min(ax, ay)
    d_tissue = (outline - rho_t) * scale_t
    d_tissue += 4.0 * smooth_noise(rng, grid.gshape, 25.0 / gum)
    d_tissue = d_tissue.astype(np.float32)
    area_mm2 = float((d_tissue > 0).sum()) * gum * gum / 1e6
    cap_width = _capsule_width(rng, grid, tissue, theta_t)
    capsule = (d_tissue > 0) & (d_tissue < cap_width)
    return Outline(d_tissue=d_tissue, cap_width=cap_width, capsule=capsule, area_mm2=area_mm2)


def _capsule_width(
    rng: np.random.Generator, grid: Grid, tissue: TissueParams, theta_t: np.ndarray
) -> np.ndarray:
    """Width (um) of the capsule strip, tapering off along the outline's polar angle ``theta_t``."""
    cap_width = np.zeros(grid.gshape, np.float32)
    cap_center = rng.uniform(-np.pi, np.pi)
    if tissue.capsule:
        half = rng.uniform(0.5, 0.9)
        dtheta = np.angle(np.exp(1j * (theta_t - cap_center))).astype(np.float32)
        taper = np.clip((half - np.abs(dtheta)) / 0.25, 0, 1)
        cap_width = (
            rng.uniform(9, 14) * taper * (1 + 0.15 * smooth_noise(rng, grid.gshape, 40 / grid.gum))
        ).astype(np.float32)
        cap_width[cap_width < 1.0] = 0
    return cap_width


@dataclass
class Structure:
    """A glomerulus or vessel: an ellipse in microns.

    Attributes:
        kind: ``"glomerulus"``, ``"artery"`` or ``"vein"``.
        x: Centre, um.
        y: Centre, um.
        radius: Outer radius (semi-major axis for veins), um.
        aspect: Minor / major axis.
        angle: Orientation of the major axis, radians.
        ident: Nucleus compartment id (set by :func:`histoseg.synthetic.cells.tubule_cells`).
    """

    kind: str
    x: float
    y: float
    radius: float
    aspect: float
    angle: float
    ident: int = 0


def place_structures(
    rng: np.random.Generator, grid: Grid, tissue: TissueParams, outline: Outline
) -> list[Structure]:
    """Glomeruli, then arteries, then veins, placed well inside the tissue and not overlapping.

    A structure that finds no room in 300 tries is left out.
    """
    Hg, Wg = grid.gshape
    gum = grid.gum
    d_tissue, cap_width = outline.d_tissue, outline.cap_width
    objects: list[Structure] = []
    n_glom = 0
    if tissue.glomeruli_per_mm2 > 0:
        n_glom = max(1, int(rng.poisson(tissue.glomeruli_per_mm2 * outline.area_mm2)))
    kinds = ["glomerulus"] * n_glom
    n_art = (tissue.vessel_count + 1) // 2
    kinds += ["artery" if i < n_art else "vein" for i in range(tissue.vessel_count)]
    gr_lo, gr_hi = tissue.glomerulus_radius_um
    for kind in kinds:
        if kind == "glomerulus":
            radius, aspect = rng.uniform(gr_lo, gr_hi), rng.uniform(0.85, 1.0)
        elif kind == "artery":
            radius, aspect = rng.uniform(18, 40), rng.uniform(0.8, 1.0)
        else:
            radius, aspect = rng.uniform(25, 60), rng.uniform(0.3, 0.7)
        for _ in range(300):
            x = rng.uniform(0, grid.width_um)
            y = rng.uniform(0, grid.height_um)
            ix, iy = min(int(x / gum), Wg - 1), min(int(y / gum), Hg - 1)
            if d_tissue[iy, ix] < radius + 25 + cap_width[iy, ix]:
                continue
            if any(math.hypot(o.x - x, o.y - y) < o.radius + radius + 30 for o in objects):
                continue
            objects.append(Structure(kind, x, y, radius, aspect, rng.uniform(0, np.pi)))
            break
    return objects


@dataclass
class Frame:
    """A structure's bounding box on a grid and local coordinates in it, each (h, w) float32.

    Attributes:
        box: (rows, cols) slices of the box.
        u: Coordinate along the major axis, um.
        v: Coordinate along the minor axis, um.
        rho: Normalised elliptical radius (1 on the outline).
        theta: Polar angle, radians.
    """

    box: tuple[slice, slice]
    u: np.ndarray
    v: np.ndarray
    rho: np.ndarray
    theta: np.ndarray


def local_frame(obj: Structure, mpp: float, shape: tuple[int, int], pad_um: float = 2.0) -> Frame | None:
    """Bounding box (padded by ``pad_um``) of a structure on a grid of ``mpp`` um per pixel; None when empty."""
    reach = obj.radius + pad_um
    x0 = max(0, int((obj.x - reach) / mpp))
    x1 = min(shape[1], int((obj.x + reach) / mpp) + 2)
    y0 = max(0, int((obj.y - reach) / mpp))
    y1 = min(shape[0], int((obj.y + reach) / mpp) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    dx = ((np.arange(x0, x1, dtype=np.float32) + 0.5) * mpp - obj.x)[None, :]
    dy = ((np.arange(y0, y1, dtype=np.float32) + 0.5) * mpp - obj.y)[:, None]
    c, s = math.cos(obj.angle), math.sin(obj.angle)
    u = dx * c + dy * s
    v = -dx * s + dy * c
    rho = np.sqrt((u / obj.radius) ** 2 + (v / (obj.radius * obj.aspect)) ** 2)
    theta = np.arctan2(v / obj.aspect, u)
    return Frame((slice(y0, y1), slice(x0, x1)), u, v, rho, theta)
