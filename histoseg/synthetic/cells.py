"""The packed tubule cells of the cortex layout: sites, elongated profiles, Voronoi cells, gaps, rounding.

Tubules are a dense packing: a Voronoi partition of jittered hexagonal sites (some
neighbouring cells merged into elongated profiles), shrunk by a noisy interstitium width
that is zero where neighbours touch, flattened against glomeruli, vessels and the capsule,
and rounded by a morphological opening. All on the geometry grid, in microns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from histoseg.synthetic.fields import hex_grid, sample_at, smooth_noise
from histoseg.synthetic.layout import Grid, Outline, Structure, local_frame
from histoseg.synthetic.params import TissueParams

ROUNDING_UM = 7.0
"""Radius (um) of the opening that rounds the corners of the packed tubule cells."""


@dataclass
class TubuleCells:
    """The tubules on the geometry grid, (Hg, Wg) arrays.

    Attributes:
        n_tub: Number of tubule instances (ids 1..n_tub).
        inst: int32 tubule instance of each pixel's cell (0 = no site).
        f_tub: float32 signed distance to the tubule outline, um (> 0 inside).
        inside: bool, tubule pixels.
        d_in: float32 distance to the cell outline inside a tubule, um.
        d_lum: float32 smoothed ``d_in`` (0 outside tubules): lumen, brush border and nuclei follow it.
        r_in: (n_tub + 1,) float32 inscribed radius of each tubule (of ``d_lum``), um.
        d_obst: float32 signed distance to glomeruli, vessels and the capsule strip, um (< 0 inside).
        capsule_id: Nucleus compartment id of the capsule strip (structures have
            ``n_tub + 1 ...``, see :attr:`histoseg.synthetic.layout.Structure.ident`).
    """

    n_tub: int
    inst: np.ndarray
    f_tub: np.ndarray
    inside: np.ndarray
    d_in: np.ndarray
    d_lum: np.ndarray
    r_in: np.ndarray
    d_obst: np.ndarray
    capsule_id: int


def tubule_cells(
    rng: np.random.Generator, grid: Grid, tissue: TissueParams, outline: Outline, objects: list[Structure]
) -> TubuleCells:
    """Pack the tubules around the placed structures; sets each structure's nucleus compartment id."""
    gum = grid.gum
    sites, rmax, spacing = _sites(rng, grid, tissue, outline, objects)
    group, n_tub = _merge_chains(rng, sites, spacing, tissue.elongated_fraction)
    site_of, d_seed = _voronoi(grid, sites)
    inst = group[site_of]  # tubule instance of each pixel's cell, 1..n_tub
    obj_base = n_tub + 1  # object ids (nucleus compartments) follow the tubule instance ids
    d_obst = _obstacles(grid, tissue, outline, objects, obj_base)
    boundary = _cell_borders(inst)
    d_border = ((ndi.distance_transform_edt(~boundary) + 0.5) * gum).astype(np.float32)
    gap = _gaps(rng, grid, tissue)

    rmax_px = np.concatenate([[0.0], rmax]).astype(np.float32)[site_of]
    f_tub = np.minimum(d_border - 0.5 * gap, rmax_px - d_seed)
    f_tub = np.minimum(f_tub, d_obst - 1.0 - gap)
    del d_seed, gap, rmax_px
    f_tub = _round_cells(f_tub, gum)

    tub_g = (f_tub > 0) & (site_of > 0)
    d_in = (ndi.distance_transform_edt(tub_g & ~boundary) * gum).astype(np.float32)
    d_lum = np.where(tub_g, ndi.gaussian_filter(d_in, 2.5 / gum, truncate=3.0), 0).astype(np.float32)
    r_in = np.zeros(n_tub + 1, np.float32)
    if n_tub:
        sub = (slice(None, None, 2), slice(None, None, 2))  # inscribed radius: a subsample is precise enough
        r_in[1:] = np.asarray(
            ndi.maximum(d_lum[sub], labels=np.where(tub_g, inst, 0)[sub], index=np.arange(1, n_tub + 1)),
            np.float32,
        )
    return TubuleCells(
        n_tub=n_tub,
        inst=inst,
        f_tub=f_tub,
        inside=tub_g,
        d_in=d_in,
        d_lum=d_lum,
        r_in=r_in,
        d_obst=d_obst,
        capsule_id=obj_base + len(objects),
    )


def _sites(
    rng: np.random.Generator, grid: Grid, tissue: TissueParams, outline: Outline, objects: list[Structure]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Tubule sites: a jittered hexagonal packing minus structures, capsule and far outside.

    Returns:
        ``(sites, rmax, spacing)``: (N, 2) site centres (x, y) um, (N,) float32 largest outer
        radius of each site's tubule (um), and the packing spacing (um).
    """
    gum = grid.gum
    r_lo, r_hi = tissue.tubule_radius_um
    atrophy = 1.0 - 0.3 * float(tissue.fibrosis)
    r_mean = 0.5 * (r_lo + r_hi)
    spacing = 2.0 * r_mean * 0.85
    sites = hex_grid(rng, grid.width_um, grid.height_um, spacing, 0.2)
    d_site = sample_at(outline.d_tissue, sites, gum)
    keep = d_site > -0.4 * spacing
    cap_site = sample_at(outline.cap_width, sites, gum)
    keep &= (cap_site == 0) | (d_site > cap_site + 0.1 * spacing)
    for obj in objects:
        keep &= np.hypot(sites[:, 0] - obj.x, sites[:, 1] - obj.y) > obj.radius + 0.1 * spacing
    keep &= rng.random(len(sites)) < tissue.tubule_density
    sites = sites[keep]
    rmax = (rng.uniform(r_lo, r_hi, len(sites)) * atrophy).astype(np.float32)
    return sites, rmax, spacing


def _merge_chains(
    rng: np.random.Generator, sites: np.ndarray, spacing: float, elongated_fraction: float
) -> tuple[np.ndarray, int]:
    """Merge chains of 2-3 neighbouring sites into elongated profiles.

    Returns:
        ``(group, n_tub)``: (N + 1,) int32 tubule instance id of each 1-based site id
        (``group[0] = 0``), and the number of tubules.
    """
    n_sites = len(sites)
    group = np.zeros(n_sites + 1, np.int32)
    n_tub = 0
    if not n_sites:
        return group, n_tub
    neighbours = cKDTree(sites).query_ball_point(sites, 1.3 * spacing)
    for i in rng.permutation(n_sites):
        if group[i + 1]:
            continue
        n_tub += 1
        group[i + 1] = n_tub
        if rng.random() >= elongated_fraction:
            continue
        direction = rng.uniform(0, 2 * np.pi)
        vec = np.array([math.cos(direction), math.sin(direction)])
        current = i
        for _ in range(int(rng.integers(1, 4))):
            best = _next_in_chain(sites, neighbours[current], current, vec, group)
            if best < 0:
                break
            step = sites[best] - sites[current]
            vec = step / (np.hypot(*step) + 1e-6)
            group[best + 1] = n_tub
            current = best
    return group, n_tub


def _next_in_chain(
    sites: np.ndarray, neighbours: list[int], current: int, vec: np.ndarray, group: np.ndarray
) -> int:
    """The free neighbour of ``current`` most in direction ``vec`` (within about 63 degrees), or -1."""
    best, best_cos = -1, 0.45
    for j in neighbours:
        if group[j + 1] or j == current:
            continue
        step = sites[j] - sites[current]
        cos = float(step @ vec) / (float(np.hypot(*step)) + 1e-6)
        if cos > best_cos:
            best, best_cos = j, cos
    return best


def _voronoi(grid: Grid, sites: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi partition of the sites: (Hg, Wg) int32 1-based site id and float32 distance to it (um)."""
    Hg, Wg = grid.gshape
    n_sites = len(sites)
    seeds = np.zeros(grid.gshape, np.int32)
    site_px = np.clip((sites / grid.gum).astype(np.intp), 0, [Wg - 1, Hg - 1])
    seeds[site_px[:, 1], site_px[:, 0]] = np.arange(1, n_sites + 1, dtype=np.int32)
    if n_sites:
        d_seed_px, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
        site_of = seeds[iy, ix]
    else:
        d_seed_px, site_of = np.full(grid.gshape, 1e6), np.zeros(grid.gshape, np.int32)
    return site_of, (d_seed_px * grid.gum).astype(np.float32)


def _obstacles(
    grid: Grid, tissue: TissueParams, outline: Outline, objects: list[Structure], obj_base: int
) -> np.ndarray:
    """Signed distance (um, < 0 inside) to the structures and the capsule strip; tubules flatten against them.

    Numbers the structures' nucleus compartments ``obj_base, obj_base + 1, ...`` on the way.
    """
    d_obst = np.full(grid.gshape, 1e3, np.float32)
    for k, obj in enumerate(objects):
        obj.ident = obj_base + k
        frame = local_frame(obj, grid.gum, grid.gshape, pad_um=40.0)
        if frame is not None:
            box = frame.box
            np.minimum(d_obst[box], (frame.rho - 1.0) * obj.radius * obj.aspect, out=d_obst[box])
    if tissue.capsule:
        cap_width = outline.cap_width
        np.minimum(d_obst, np.where(cap_width > 0, outline.d_tissue - cap_width, 1e3), out=d_obst)
    return d_obst


def _cell_borders(inst: np.ndarray) -> np.ndarray:
    """(Hg, Wg) bool: pixels with a 4-neighbour of another tubule instance."""
    boundary = np.zeros(inst.shape, bool)
    diff = inst[:, 1:] != inst[:, :-1]
    boundary[:, 1:] |= diff
    boundary[:, :-1] |= diff
    diff = inst[1:, :] != inst[:-1, :]
    boundary[1:, :] |= diff
    boundary[:-1, :] |= diff
    return boundary


def _gaps(rng: np.random.Generator, grid: Grid, tissue: TissueParams) -> np.ndarray:
    """(Hg, Wg) float32 interstitium width between tubules, um: zero where tubules touch."""
    gum = grid.gum
    fib = float(tissue.fibrosis)
    w_gap = tissue.interstitium_width_um * (1 + 4 * fib)
    touch_noise = smooth_noise(rng, grid.gshape, 45 / gum)
    touching = max(0.0, min(1.0, tissue.touching_fraction * (1 - fib)))
    threshold = float(np.quantile(touch_noise[::4, ::4], touching)) if touching > 0 else -np.inf
    gap = w_gap * np.exp(0.45 * smooth_noise(rng, grid.gshape, 30 / gum))
    return np.where(touch_noise < threshold, 0.0, gap).astype(np.float32)


def _round_cells(f_tub: np.ndarray, gum: float) -> np.ndarray:
    """Round the polygonal cells: an opening by a disc of radius :data:`ROUNDING_UM`.

    Erode = keep the pixels deeper than the radius, dilate = within the radius of them;
    neighbours cannot merge because each core stays that far from its cell border. The
    result is a signed distance to the rounded outline, um.
    """
    rho = ROUNDING_UM
    core = ndi.gaussian_filter(f_tub, 1.0 / gum, truncate=3.0) > rho
    return (rho + 0.75 * gum - ndi.distance_transform_edt(~core) * gum).astype(np.float32)
