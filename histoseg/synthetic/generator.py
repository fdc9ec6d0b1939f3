"""Seeded generator of synthetic PAS-stained kidney cortex slides with exact labels.

This module owns histoseg's embedded default dataset: pyramidal RGB slides that look
like periodic acid-Schiff (PAS) stained kidney cortex, each with a label mask that is
the exact truth of what was painted (class indices of :data:`histoseg.KIDNEY_CLASSES`:
0 background = glass, 1 interstitium, 2 tubules, 3 glomeruli, 4 other), so areas are
known to the pixel.

What is painted (sizes in microns, so the look survives a change of ``mpp``):

- an irregular tissue outline on glass, with a strip of renal capsule on one side;
- tubules: a dense packing (a Voronoi partition of jittered hexagonal sites, some
  neighbouring cells merged into elongated profiles) of epithelial rings with a thin
  magenta basement membrane, a magenta PAS-positive brush border around a narrow
  lumen (proximal) or an open lumen (distal), and round blue-purple nuclei. Many
  neighbours touch with no interstitium between them, as in real cortex (the case
  the U-Net border weights of Ronneberger et al. 2015 are for);
- glomeruli: a lobulated capillary tuft (magenta matrix, pale capillary lumens, many
  nuclei) inside Bowman's capsule with a thin urinary space; the label covers both;
- interstitium: pale-pink fibrous strands with sparse elongated nuclei;
- other: arteries (thick muscular wall, elastic lamina, lumen), veins (thin wall, wide
  lumen) and the capsule strip.

Colours are made in optical density with a two-stain model (haematoxylin + PAS,
Beer-Lambert, as in Ruifrok & Johnston 2001 colour deconvolution), then blurred and
noised; :class:`StainParams` shifts hue, saturation, brightness and stain strength,
and :class:`TissueParams` holds "pathology" knobs (fibrosis: wider interstitium,
atrophic tubules, thick membranes, inflammatory cells) to simulate domain shift.

Geometry distance fields are computed at about 1 um per pixel and interpolated, so a
3072 x 2304 slide takes about 2.5 s of CPU (rendering and writing both TIFFs). The whole
slide is rendered in memory (peak about 110 bytes per pixel, 0.8 GB for 3072 x 2304),
hence the size limit :data:`MAX_PIXELS`.

Example:
    >>> from histoseg.synthetic.generator import generate_dataset
    >>> slides = generate_dataset("data/synthetic", n_slides=2, seed=0)  # doctest: +SKIP
    >>> slides[0].split, slides[0].pixel_counts["glomeruli"]  # doctest: +SKIP
    ('train', 140941)

Command line: ``python -m histoseg.synthetic.generator --out DIR [--n N] [--seed S] [--width W
--height H --mpp M] [--fibrosis F]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from histoseg import KIDNEY_CLASSES
from histoseg.errors import ConfigError, HistosegError
from histoseg.io.files import atomic_path, ensure_writable_dir, safe_stem
from histoseg.io.tiff import describe_label_map, write_pyramid_tiff

__all__ = [
    "KIDNEY_COLORS",
    "MAX_PIXELS",
    "RenderedSlide",
    "StainParams",
    "SyntheticSlide",
    "TissueParams",
    "generate_dataset",
    "generate_slide",
    "main",
    "render_slide",
]

GENERATOR_VERSION = 1
"""Bumped whenever the same parameters would paint different pixels (invalidates caches)."""

_ROUNDING_UM = 7.0
"""Radius (um) of the opening that rounds the corners of the packed tubule cells."""

MAX_PIXELS = 48_000_000
"""Largest slide (width x height) rendered in memory."""

KIDNEY_COLORS: np.ndarray = np.array(
    [[255, 255, 255], [240, 200, 80], [60, 160, 220], [220, 40, 120], [120, 200, 90]], dtype=np.uint8
)
"""(5, 3) uint8 display colours of the kidney classes (the label TIFFs' palette)."""

BACKGROUND, INTERSTITIUM, TUBULES, GLOMERULI, OTHER = range(5)

# Optical densities (-log10(rgb / 255)) of unit stain concentration, measured on PAS mouse
# kidney (the example tiles of Bouteldja et al., JASN 2021).
_OD_HAEMATOXYLIN = np.array([0.537, 0.520, 0.266], np.float32)  # nucleus rgb (74, 77, 138)
_OD_PAS = np.array([0.23, 0.63, 0.20], np.float32)  # basement membrane rgb (150, 60, 160)
_OD_CYTOPLASM = np.array([0.197, 0.248, 0.139], np.float32)  # tubular cytoplasm rgb (162, 144, 185)
_OD_GLASS = np.array([0.022, 0.034, 0.019], np.float32)  # glass rgb (242, 236, 244)


@dataclass(frozen=True)
class StainParams:
    """Colour of the synthetic stain.

    Attributes:
        hue_shift: Rotation of both stain colours about the grey axis, in degrees.
        saturation: Scale of the colourful part of the optical density (1 = unchanged).
        brightness: > 1 lighter, < 1 darker (divides the optical density).
        haematoxylin: Strength of the nuclear (blue-purple) stain.
        pas: Strength of the PAS (magenta) stain.
        noise_sigma: Standard deviation of the per-pixel sensor noise, in uint8 units.
        blur_um: Standard deviation of the optical blur, in microns.
        variation: Random per-slide jitter (relative, drawn from the slide seed) of hue
            (``variation * 30`` degrees), saturation, brightness and stain strengths.
        jpeg_quality: JPEG quality of the written slide (1-100).
    """

    hue_shift: float = 0.0
    saturation: float = 1.0
    brightness: float = 1.0
    haematoxylin: float = 1.0
    pas: float = 1.0
    noise_sigma: float = 6.0
    blur_um: float = 0.35
    variation: float = 0.08
    jpeg_quality: int = 90


@dataclass(frozen=True)
class TissueParams:
    """Tissue architecture of the synthetic cortex ("pathology" knobs).

    Attributes:
        tubule_radius_um: Range of the largest outer radius of a tubule profile, microns.
        tubule_density: Fraction (0-1] of the densely packed tubule sites that hold a tubule.
        interstitium_width_um: Typical width of interstitium between non-touching tubules.
        touching_fraction: Fraction (0-1) of tubule borders with no interstitium between them.
        elongated_fraction: Fraction of tubules cut lengthwise (2-3 merged sites).
        distal_fraction: Fraction of distal tubules (open lumen, no brush border).
        fibrosis: 0 (healthy) to 1 (severe): widens the interstitium (x ``1 + 4 * fibrosis``),
            makes tubules atrophic (smaller, flat epithelium, thick basement membrane, no
            brush border), and adds interstitial inflammatory cells.
        glomeruli_per_mm2: Mean number of glomeruli per mm^2 of tissue (at least one is
            placed when > 0 and there is room).
        glomerulus_radius_um: Range of the outer radius of Bowman's capsule, microns.
        vessel_count: Number of vessels (about half arteries, the first one an artery).
        capsule: Whether a strip of renal capsule (class ``other``) lines part of the outline.
        tissue_extent: Size of the tissue outline relative to the slide (0-1).
    """

    tubule_radius_um: tuple[float, float] = (19.0, 29.0)
    tubule_density: float = 0.97
    interstitium_width_um: float = 3.0
    touching_fraction: float = 0.35
    elongated_fraction: float = 0.55
    distal_fraction: float = 0.25
    fibrosis: float = 0.0
    glomeruli_per_mm2: float = 5.0
    glomerulus_radius_um: tuple[float, float] = (32.0, 44.0)
    vessel_count: int = 4
    capsule: bool = True
    tissue_extent: float = 0.9


@dataclass
class SyntheticSlide:
    """One generated slide and its exact class areas.

    Attributes:
        image_path: RGB pyramidal TIFF (JPEG tiles, mpp in the resolution tags).
        label_path: uint8 label mask TIFF (palette, Deflate), same size as the image.
        mpp: Microns per pixel of level 0.
        width: Level-0 width in pixels.
        height: Level-0 height in pixels.
        pixel_counts: Class name -> number of pixels of that class in the label mask.
        areas_um2: Class name -> area in square microns (``pixels * mpp**2``).
        name: Slide name (file stem).
        seed: Seed the slide was rendered from.
        split: ``"train"``, ``"val"`` or ``"test"`` (set by :func:`generate_dataset`).
        objects: Object counts: ``tubules``, ``glomeruli``, ``arteries``, ``veins``.
    """

    image_path: Path
    label_path: Path
    mpp: float
    width: int
    height: int
    pixel_counts: dict[str, int]
    areas_um2: dict[str, float]
    name: str = ""
    seed: int = 0
    split: str = "train"
    objects: dict[str, int] = field(default_factory=dict)


@dataclass
class RenderedSlide:
    """A slide rendered in memory (no files).

    Attributes:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) uint8 class indices of :data:`histoseg.KIDNEY_CLASSES`.
        tubule_instances: (H, W) int32 tubule instance ids (0 = not a tubule); two
            touching tubules have different ids.
        objects: Object counts: ``tubules``, ``glomeruli``, ``arteries``, ``veins``.
    """

    image: np.ndarray
    labels: np.ndarray
    tubule_instances: np.ndarray
    objects: dict[str, int]


# --------------------------------------------------------------------------- fields


def _resize_bilinear(a: np.ndarray, shape: tuple[int, int], factor: float) -> np.ndarray:
    """Bilinearly resample a 2-D field by ``factor`` (output pixel size = input pixel size / factor).

    Pixel centres are aligned: output pixel ``y`` samples input coordinate
    ``(y + 0.5) / factor - 0.5`` (edges clamped); the result has exactly ``shape``.
    Integer factors use strided slicing only (fast); other factors gather.

    Args:
        a: (h, w) field.
        shape: Output (H, W), about ``(h * factor, w * factor)``.
        factor: Upsampling factor (> 0).

    Returns:
        (H, W) float32.
    """
    a = np.asarray(a, dtype=np.float32)
    if float(factor).is_integer():
        g = int(factor)
        return _upsample_axis(_upsample_axis(a, shape[0], g, 0), shape[1], g, 1)

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out, dtype=np.float64) + 0.5) / factor - 0.5
        base = np.floor(pos)
        weight = (pos - base).astype(np.float32)
        i0 = np.clip(base.astype(np.intp), 0, n_in - 1)
        i1 = np.clip(base.astype(np.intp) + 1, 0, n_in - 1)
        return i0, i1, weight

    y0, y1, wy = axis(shape[0], a.shape[0])
    x0, x1, wx = axis(shape[1], a.shape[1])
    rows = a[y0] * (1 - wy)[:, None] + a[y1] * wy[:, None]
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


def _upsample_axis(a: np.ndarray, n_out: int, g: int, axis: int) -> np.ndarray:
    """Linear upsampling by an integer factor ``g`` along one axis, centre-aligned, edge-clamped."""
    if g == 1:
        return a[:n_out] if axis == 0 else a[:, :n_out]
    n_in = a.shape[axis]
    if axis == 0:
        padded = np.concatenate([a[:1], a, a[-1:]], axis=0)  # padded[i + 1] = a[i]
        out = np.empty((n_in * g, a.shape[1]), np.float32)
    else:
        padded = np.concatenate([a[:, :1], a, a[:, -1:]], axis=1)
        out = np.empty((a.shape[0], n_in * g), np.float32)
    for phase in range(g):
        offset = (phase + 0.5) / g - 0.5  # output g * i + phase samples source position i + offset
        w = np.float32(abs(offset))
        if axis == 0:
            near = padded[:-2] if offset < 0 else padded[2:]
            out[phase::g] = padded[1:-1] * (1 - w) + near * w
        else:
            near = padded[:, :-2] if offset < 0 else padded[:, 2:]
            out[:, phase::g] = padded[:, 1:-1] * (1 - w) + near * w
    return out[:n_out] if axis == 0 else out[:, :n_out]


def _resize_nearest(a: np.ndarray, shape: tuple[int, int], factor: int) -> np.ndarray:
    """Repeat each pixel of ``a`` ``factor`` x ``factor`` times, cropped to ``shape``."""
    if factor > 1:
        a = np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)
    return a[: shape[0], : shape[1]]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with features about ``scale_px`` pixels wide, (H, W) float32."""
    if scale_px <= 4.0:
        field_ = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), scale_px / 2, truncate=3.0)
    else:
        factor = float(max(2, round(scale_px / 3.0)))  # features span ~3 coarse pixels: smooth
        coarse = (int(math.ceil(shape[0] / factor)) + 2, int(math.ceil(shape[1] / factor)) + 2)
        small = ndi.gaussian_filter(rng.standard_normal(coarse, dtype=np.float32), 1.5, mode="wrap")
        field_ = _resize_bilinear(small, shape, factor)
    std = float(field_.std())
    return (field_ - float(field_.mean())) / (std if std > 0 else 1.0)


def _upsampled_noise(
    rng: np.random.Generator, shape: tuple[int, int], gshape: tuple[int, int], g: int, scale_px: float
) -> np.ndarray:
    """Unit-variance noise made on the geometry grid (``scale_px`` geometry pixels) and upsampled by ``g``."""
    field_ = _resize_bilinear(_smooth_noise(rng, gshape, scale_px), shape, g)
    std = float(field_[::7, ::7].std())
    return field_ / np.float32(std if std > 0 else 1.0)


def _hex_grid(
    rng: np.random.Generator, width_um: float, height_um: float, spacing: float, jitter: float
) -> np.ndarray:
    """Jittered hexagonal grid of points covering a rectangle (plus one spacing), (N, 2) (x, y) microns."""
    row_h = spacing * math.sqrt(3) / 2
    ys = np.arange(-spacing, height_um + spacing, row_h)
    xs = np.arange(-spacing, width_um + spacing, spacing)
    gx, gy = np.meshgrid(xs, ys)
    gx = gx + (np.arange(len(ys))[:, None] % 2) * spacing / 2
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    pts += rng.uniform(-jitter, jitter, pts.shape) * spacing
    return pts


def _sample(fieldmap: np.ndarray, pts: np.ndarray, um_per_px: float) -> np.ndarray:
    """Values of a geometry-resolution field at points (x, y) in microns (nearest pixel)."""
    iy = np.clip((pts[:, 1] / um_per_px).astype(np.intp), 0, fieldmap.shape[0] - 1)
    ix = np.clip((pts[:, 0] / um_per_px).astype(np.intp), 0, fieldmap.shape[1] - 1)
    return fieldmap[iy, ix]


# --------------------------------------------------------------------------- objects


@dataclass
class _Object:
    kind: str  # "glomerulus" | "artery" | "vein"
    x: float  # centre, microns
    y: float
    radius: float  # outer radius (semi-major axis for veins), microns
    aspect: float  # minor / major axis
    angle: float  # radians
    ident: int = 0


@dataclass
class _Nuclei:
    """Nucleus list being collected: centres (um), semi-axes (um), angle, stain, compartment."""

    x: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    a: list[np.ndarray] = field(default_factory=list)
    b: list[np.ndarray] = field(default_factory=list)
    angle: list[np.ndarray] = field(default_factory=list)
    dark: list[np.ndarray] = field(default_factory=list)
    comp: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        x: np.ndarray,
        y: np.ndarray,
        a: np.ndarray | float,
        b: np.ndarray | float,
        angle: np.ndarray | float,
        dark: np.ndarray | float,
        comp: np.ndarray | int,
    ) -> None:
        n = len(x)
        if n == 0:
            return
        self.x.append(np.asarray(x, np.float32))
        self.y.append(np.asarray(y, np.float32))
        for store, value, dtype in (
            (self.a, a, np.float32),
            (self.b, b, np.float32),
            (self.angle, angle, np.float32),
            (self.dark, dark, np.float32),
            (self.comp, comp, np.int32),
        ):
            store.append(np.broadcast_to(np.asarray(value, dtype), (n,)).astype(dtype))

    def arrays(self) -> dict[str, np.ndarray]:
        names = ("x", "y", "a", "b", "angle", "dark", "comp")
        if not self.x:
            return {n: np.zeros(0, np.int32 if n == "comp" else np.float32) for n in names}
        return {n: np.concatenate(getattr(self, n)) for n in names}


def _local_frame(
    obj: _Object, mpp: float, shape: tuple[int, int], pad_um: float = 2.0
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Bounding box of an object and local coordinates in it.

    Returns:
        ``(box, u, v, rho, theta)``: the (rows, cols) slices, the rotated coordinates (um) along
        the major/minor axes, the normalised elliptical radius (1 on the outline) and the
        polar angle; None when the box is empty.
    """
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
    return (slice(y0, y1), slice(x0, x1)), u, v, rho, theta


def _harmonics(rng: np.random.Generator, kmin: int, kmax: int, amplitude: float) -> np.ndarray:
    """Random angular harmonics (k, amplitude, phase) rows for a wobbly outline."""
    ks = np.arange(kmin, kmax + 1, dtype=np.float32)
    amps = amplitude * rng.uniform(0.3, 1.0, len(ks)).astype(np.float32) / np.sqrt(ks / kmin)
    phases = rng.uniform(0, 2 * np.pi, len(ks)).astype(np.float32)
    return np.stack([ks, amps, phases], axis=1)


def _wobble(theta: np.ndarray, harmonics: np.ndarray) -> np.ndarray:
    out = np.zeros_like(theta)
    for k, amp, phase in harmonics:
        out += amp * np.cos(k * theta + phase)
    return out


# --------------------------------------------------------------------------- rendering


def render_slide(
    *,
    seed: int,
    width: int = 3072,
    height: int = 2304,
    mpp: float = 0.5,
    stain: StainParams | None = None,
    tissue: TissueParams | None = None,
) -> RenderedSlide:
    """Paint one synthetic PAS kidney cortex slide in memory.

    Args:
        seed: Random seed; the same seed and parameters give identical arrays.
        width: Width in pixels.
        height: Height in pixels.
        mpp: Microns per pixel (sizes of structures are fixed in microns).
        stain: Colour parameters (default :class:`StainParams`).
        tissue: Architecture parameters (default :class:`TissueParams`).

    Returns:
        The RGB image (H, W, 3) uint8, labels (H, W) uint8 and tubule instances (H, W) int32.

    Raises:
        ConfigError: invalid size, mpp or parameters.
    """
    stain = stain or StainParams()
    tissue = tissue or TissueParams()
    _check_params(width, height, mpp, stain, tissue)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), GENERATOR_VERSION]))
    H, W = int(height), int(width)
    shape = (H, W)

    # Geometry grid: about 1 um per pixel, an integer factor g of the output grid.
    g = max(1, int(round(1.0 / mpp)))
    gum = g * mpp
    Hg, Wg = -(-H // g), -(-W // g)
    gshape = (Hg, Wg)
    width_um, height_um = W * mpp, H * mpp

    fib = float(tissue.fibrosis)

    # ---- tissue outline (signed distance in um, > 0 inside), capsule side
    gy = ((np.arange(Hg, dtype=np.float32) + 0.5) * gum)[:, None]
    gx = ((np.arange(Wg, dtype=np.float32) + 0.5) * gum)[None, :]
    cx = width_um * (0.5 + rng.uniform(-0.04, 0.04))
    cy = height_um * (0.5 + rng.uniform(-0.04, 0.04))
    ax = 0.5 * width_um * tissue.tissue_extent
    ay = 0.5 * height_um * tissue.tissue_extent
    theta_t = np.arctan2((gy - cy) / ay, (gx - cx) / ax)
    rho_t = np.sqrt(((gx - cx) / ax) ** 2 + ((gy - cy) / ay) ** 2)
    outline = 1.0 + _wobble(theta_t, _harmonics(rng, 2, 7, 0.07))
    scale_t = min(ax, ay)
    d_tissue = (outline - rho_t) * scale_t
    d_tissue += 4.0 * _smooth_noise(rng, gshape, 25.0 / gum)
    d_tissue = d_tissue.astype(np.float32)
    tissue_area_mm2 = float((d_tissue > 0).sum()) * gum * gum / 1e6

    cap_width = np.zeros(gshape, np.float32)
    cap_center = rng.uniform(-np.pi, np.pi)
    if tissue.capsule:
        half = rng.uniform(0.5, 0.9)
        dtheta = np.angle(np.exp(1j * (theta_t - cap_center))).astype(np.float32)
        taper = np.clip((half - np.abs(dtheta)) / 0.25, 0, 1)
        cap_width = (rng.uniform(9, 14) * taper * (1 + 0.15 * _smooth_noise(rng, gshape, 40 / gum))).astype(
            np.float32
        )
        cap_width[cap_width < 1.0] = 0
    capsule_g = (d_tissue > 0) & (d_tissue < cap_width)

    # ---- glomeruli and vessels (placed well inside the tissue, not overlapping)
    objects: list[_Object] = []
    n_glom = 0
    if tissue.glomeruli_per_mm2 > 0:
        n_glom = max(1, int(rng.poisson(tissue.glomeruli_per_mm2 * tissue_area_mm2)))
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
            x = rng.uniform(0, width_um)
            y = rng.uniform(0, height_um)
            ix, iy = min(int(x / gum), Wg - 1), min(int(y / gum), Hg - 1)
            if d_tissue[iy, ix] < radius + 25 + cap_width[iy, ix]:
                continue
            if any(math.hypot(o.x - x, o.y - y) < o.radius + radius + 30 for o in objects):
                continue
            objects.append(_Object(kind, x, y, radius, aspect, rng.uniform(0, np.pi)))
            break

    # ---- tubule sites: jittered hexagonal packing, minus objects, capsule and far outside
    r_lo, r_hi = tissue.tubule_radius_um
    atrophy = 1.0 - 0.3 * fib
    r_mean = 0.5 * (r_lo + r_hi)
    spacing = 2.0 * r_mean * 0.85
    sites = _hex_grid(rng, width_um, height_um, spacing, 0.2)
    d_site = _sample(d_tissue, sites, gum)
    keep = d_site > -0.4 * spacing
    cap_site = _sample(cap_width, sites, gum)
    keep &= (cap_site == 0) | (d_site > cap_site + 0.1 * spacing)
    for obj in objects:
        keep &= np.hypot(sites[:, 0] - obj.x, sites[:, 1] - obj.y) > obj.radius + 0.1 * spacing
    keep &= rng.random(len(sites)) < tissue.tubule_density
    sites = sites[keep]
    n_sites = len(sites)
    rmax = (rng.uniform(r_lo, r_hi, n_sites) * atrophy).astype(np.float32)

    # merge chains of 2-3 neighbouring sites into elongated profiles
    group = np.zeros(n_sites + 1, np.int32)  # site id (1-based) -> tubule instance id
    n_tub = 0
    if n_sites:
        tree = cKDTree(sites)
        neighbours = tree.query_ball_point(sites, 1.3 * spacing)
        for i in rng.permutation(n_sites):
            if group[i + 1]:
                continue
            n_tub += 1
            group[i + 1] = n_tub
            if rng.random() >= tissue.elongated_fraction:
                continue
            direction = rng.uniform(0, 2 * np.pi)
            vec = np.array([math.cos(direction), math.sin(direction)])
            current = i
            for _ in range(int(rng.integers(1, 4))):
                best, best_cos = -1, 0.45
                for j in neighbours[current]:
                    if group[j + 1] or j == current:
                        continue
                    step = sites[j] - sites[current]
                    cos = float(step @ vec) / (float(np.hypot(*step)) + 1e-6)
                    if cos > best_cos:
                        best, best_cos = j, cos
                if best < 0:
                    break
                step = sites[best] - sites[current]
                vec = step / (np.hypot(*step) + 1e-6)
                group[best + 1] = n_tub
                current = best

    # ---- Voronoi partition (geometry grid) of the tubule sites
    seeds = np.zeros(gshape, np.int32)
    obj_base = n_tub + 1  # object ids (nucleus compartments) follow the tubule instance ids
    capsule_id = obj_base + len(objects)
    site_px = np.clip((sites / gum).astype(np.intp), 0, [Wg - 1, Hg - 1])
    seeds[site_px[:, 1], site_px[:, 0]] = np.arange(1, n_sites + 1, dtype=np.int32)
    if n_sites:
        d_seed_px, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
        site_of = seeds[iy, ix]
        del iy, ix
    else:
        d_seed_px, site_of = np.full(gshape, 1e6), np.zeros(gshape, np.int32)
    d_seed = (d_seed_px * gum).astype(np.float32)
    del d_seed_px, seeds
    inst = group[site_of]  # tubule instance of each pixel's cell, 1..n_tub

    # obstacles: signed distance (um, < 0 inside) to glomeruli, vessels and the capsule strip;
    # tubules are flattened against them instead of overlapping
    d_obst = np.full(gshape, 1e3, np.float32)
    for k, obj in enumerate(objects):
        obj.ident = obj_base + k
        frame = _local_frame(obj, gum, gshape, pad_um=40.0)
        if frame is not None:
            box, _u, _v, rho, _theta = frame
            np.minimum(d_obst[box], (rho - 1.0) * obj.radius * obj.aspect, out=d_obst[box])
    if tissue.capsule:
        np.minimum(d_obst, np.where(cap_width > 0, d_tissue - cap_width, 1e3), out=d_obst)

    boundary = np.zeros(gshape, bool)
    diff = inst[:, 1:] != inst[:, :-1]
    boundary[:, 1:] |= diff
    boundary[:, :-1] |= diff
    diff = inst[1:, :] != inst[:-1, :]
    boundary[1:, :] |= diff
    boundary[:-1, :] |= diff
    d_border = ((ndi.distance_transform_edt(~boundary) + 0.5) * gum).astype(np.float32)

    # interstitium width: zero where tubules touch
    w_gap = tissue.interstitium_width_um * (1 + 4 * fib)
    touch_noise = _smooth_noise(rng, gshape, 45 / gum)
    touching = max(0.0, min(1.0, tissue.touching_fraction * (1 - fib)))
    threshold = float(np.quantile(touch_noise[::4, ::4], touching)) if touching > 0 else -np.inf
    gap = w_gap * np.exp(0.45 * _smooth_noise(rng, gshape, 30 / gum))
    gap = np.where(touch_noise < threshold, 0.0, gap).astype(np.float32)

    rmax_px = np.concatenate([[0.0], rmax]).astype(np.float32)[site_of]
    f_tub = np.minimum(d_border - 0.5 * gap, rmax_px - d_seed)
    f_tub = np.minimum(f_tub, d_obst - 1.0 - gap)
    # round the polygonal cells: morphological opening by a disc of radius rho (erode = keep the
    # pixels deeper than rho, dilate = within rho of them); neighbours cannot merge because each
    # core stays rho away from its cell border. f_tub becomes a signed distance to the outline.
    rho = _ROUNDING_UM
    core = ndi.gaussian_filter(f_tub, 1.0 / gum, truncate=3.0) > rho
    f_tub = (rho + 0.75 * gum - ndi.distance_transform_edt(~core) * gum).astype(np.float32)
    del core
    del d_seed, gap, rmax_px

    tub_g = (f_tub > 0) & (site_of > 0)
    d_in_px = ndi.distance_transform_edt(tub_g & ~boundary)
    d_in = (d_in_px * gum).astype(np.float32)
    del d_in_px
    # lumen, brush border and nuclei follow a smoothed inner distance (rounder than the cell polygon)
    d_lum = np.where(tub_g, ndi.gaussian_filter(d_in, 2.5 / gum, truncate=3.0), 0).astype(np.float32)
    tub_ids = np.arange(1, n_tub + 1)
    r_in = np.zeros(n_tub + 1, np.float32)
    if n_tub:
        sub = (slice(None, None, 2), slice(None, None, 2))  # inscribed radius: a subsample is precise enough
        r_in[1:] = np.asarray(
            ndi.maximum(d_lum[sub], labels=np.where(tub_g, inst, 0)[sub], index=tub_ids), np.float32
        )

    # per-tubule properties
    distal = rng.random(n_tub + 1) < tissue.distal_fraction
    atrophic = rng.random(n_tub + 1) < fib
    frac = np.where(distal, rng.uniform(0.45, 0.6, n_tub + 1), rng.uniform(0.72, 0.9, n_tub + 1))
    frac = np.where(atrophic, rng.uniform(0.35, 0.5, n_tub + 1), frac)
    thick = (frac * r_in).astype(np.float32)  # epithelium thickness, um
    brush = np.where(distal | atrophic, 0.0, rng.uniform(2.6, 4.0, n_tub + 1)).astype(np.float32)
    membrane = np.where(atrophic, rng.uniform(1.4, 2.2, n_tub + 1), 0.65 + 0.8 * fib).astype(np.float32)
    cyto_c = (np.where(distal, 0.62, 0.75) * rng.uniform(0.85, 1.12, n_tub + 1)).astype(np.float32)
    cyto_c = np.where(atrophic, 0.75, cyto_c).astype(np.float32)
    cyto_p = (np.where(distal, 0.06, 0.03) * rng.uniform(0.8, 1.2, n_tub + 1)).astype(np.float32)
    brush_p = rng.uniform(0.35, 0.55, n_tub + 1).astype(np.float32)
    lumen_rough = np.where(distal | atrophic, 0.5, 1.6).astype(np.float32)

    # ---- full-resolution maps
    tissue_f = _resize_bilinear(d_tissue, shape, g) > 0
    inst_f = _resize_nearest(inst, shape, g)
    f_tub_f = _resize_bilinear(f_tub, shape, g)
    d_in_f = _resize_bilinear(d_in, shape, g)
    d_lum_f = _resize_bilinear(d_lum, shape, g)
    tubule_f = (f_tub_f > 0) & (inst_f >= 1) & tissue_f
    labels = np.where(tissue_f, INTERSTITIUM, BACKGROUND).astype(np.uint8)
    labels[tubule_f] = TUBULES
    inst_tub = np.where(tubule_f, inst_f, 0).astype(np.int32)

    noise_fine = _upsampled_noise(rng, shape, gshape, g, 1.0 / gum)
    noise_med = _upsampled_noise(rng, shape, gshape, g, 3.5 / gum)
    stain_field = _resize_bilinear(_smooth_noise(rng, gshape, 150 / gum), shape, g)

    # stain concentrations: haematoxylin (nuclei), PAS (magenta), cytoplasm (lilac-grey)
    maps = _StainMaps(
        h=np.zeros(shape, np.float32), p=np.zeros(shape, np.float32), c=np.zeros(shape, np.float32)
    )
    comp = np.full(shape, -1, np.int32)  # nucleus compartment (-1: none, 0: interstitium)

    # interstitium: pale, with thin pink fibres
    # painting works on flat views and flat indices (several times faster than 2-D fancy indexing)
    lab1, comp1, inst1, itub1 = labels.reshape(-1), comp.reshape(-1), inst_f.reshape(-1), inst_tub.reshape(-1)
    nf1, nm1 = noise_fine.reshape(-1), noise_med.reshape(-1)
    h1, p1, c1 = maps.h.reshape(-1), maps.p.reshape(-1), maps.c.reshape(-1)
    idx = np.flatnonzero(labels == INTERSTITIUM)
    nm = nm1[idx]
    fibres = np.clip(1.0 - np.abs(nm) / (0.12 + 0.25 * fib), 0, 1)
    p1[idx] = 0.05 + 0.08 * fib + (0.12 + 0.2 * fib) * fibres
    c1[idx] = 0.10 + 0.15 * fib + 0.08 * fibres + 0.03 * nf1[idx]
    comp1[idx] = 0
    del nm, fibres

    # tubules: basement membrane, epithelium, brush border, lumen
    idx = np.flatnonzero(tubule_f)
    ti = inst1[idx]
    nf = nf1[idx]
    edge = np.minimum(d_in_f.reshape(-1)[idx], np.maximum(f_tub_f.reshape(-1)[idx], 0))
    din = d_lum_f.reshape(-1)[idx]
    t_edge = thick[ti] + lumen_rough[ti] * nm1[idx]
    lumen = din > t_edge
    border = (din > t_edge - brush[ti]) & ~lumen
    bm = edge < membrane[ti]
    grain = 1.0 + 0.16 * nf
    tc = cyto_c[ti] * grain
    tp = cyto_p[ti] * grain
    th = np.full(tc.shape, 0.02, np.float32)
    depth_in_border = np.clip((din - (t_edge - brush[ti])) / np.maximum(brush[ti], 1e-3), 0, 1)
    fuzz = np.clip(0.9 + 0.35 * nf - 0.3 * depth_in_border, 0.3, 1.0)
    tp = np.where(border, tp + brush_p[ti] * fuzz, tp)
    tc = np.where(border, tc * 0.55, tc)
    debris = np.clip(nf - 0.5, 0, None) * 0.35 * (brush[ti] > 0)
    tc = np.where(lumen, 0.02, tc)
    th = np.where(lumen, 0.0, th)
    tp = np.where(lumen, 0.03 + debris, tp)
    tp = np.where(bm, (0.5 + 0.3 * fib) * (1 + 0.1 * nf), tp)
    tc = np.where(bm, 0.3, tc)
    h1[idx], p1[idx], c1[idx] = th, tp, tc
    comp1[idx] = np.where(lumen | bm | border, -1, ti)
    del ti, din, nf, edge, t_edge, lumen, border, bm, grain, tc, tp, th, debris, depth_in_border, fuzz, idx

    nuclei = _Nuclei()
    # tubular nuclei: mid-epithelium, on a jittered grid
    pts = _hex_grid(rng, width_um, height_um, 7.5, 0.3)
    pi_ = _sample(inst, pts, gum)
    is_tub = (pi_ >= 1) & _sample(tub_g, pts, gum)
    pts, pi_ = pts[is_tub], pi_[is_tub]
    depth = _sample(d_lum, pts, gum)
    t_pts = thick[pi_] - brush[pi_]
    centre = np.where(distal[pi_], 0.5, 0.42) * t_pts
    band = np.abs(depth - centre) < np.maximum(0.22 * t_pts, 1.2)
    band &= rng.random(len(pts)) < np.where(distal[pi_], 0.9, 0.7)
    pts, pi_ = pts[band], pi_[band]
    n = len(pts)
    rad = np.where(atrophic[pi_], rng.uniform(2.0, 2.5, n), rng.uniform(2.8, 3.4, n))
    nuclei.add(
        pts[:, 0],
        pts[:, 1],
        rad * rng.uniform(1.0, 1.12, n),
        rad,
        rng.uniform(0, np.pi, n),
        rng.uniform(0.6, 0.78, n) * np.where(atrophic[pi_], 1.4, 1.0),
        pi_,
    )

    # interstitial nuclei: sparse, elongated along the tubule surfaces; inflammatory cells with fibrosis
    pts = _hex_grid(rng, width_um, height_um, 14.0, 0.45)
    ok = (_sample(d_tissue, pts, gum) > 2) & ~_sample(tub_g, pts, gum) & (_sample(d_obst, pts, gum) > 1)
    pts = pts[ok & (rng.random(len(pts)) < 0.5 + 0.3 * fib)]
    gyf, gxf = np.gradient(f_tub)
    tangent = np.arctan2(_sample(gyf, pts, gum), _sample(gxf, pts, gum)) + np.pi / 2
    del gyf, gxf
    n = len(pts)
    nuclei.add(pts[:, 0], pts[:, 1], rng.uniform(3.2, 4.6, n), rng.uniform(1.0, 1.5, n), tangent, 1.1, 0)
    if fib > 0:
        pts = _hex_grid(rng, width_um, height_um, 7.0, 0.45)
        ok = (_sample(d_tissue, pts, gum) > 2) & ~_sample(tub_g, pts, gum) & (_sample(d_obst, pts, gum) > 1)
        pts = pts[ok & (rng.random(len(pts)) < 0.45 * fib)]
        r = rng.uniform(1.9, 2.4, len(pts))
        nuclei.add(pts[:, 0], pts[:, 1], r, r, 0.0, 1.5, 0)

    counts = {"tubules": int(n_tub), "glomeruli": 0, "arteries": 0, "veins": 0}
    # renal capsule strip (other): dense fibrous band with flat nuclei parallel to the surface
    if tissue.capsule:
        cap_f = (_resize_bilinear(cap_width - d_tissue, shape, g) > 0) & tissue_f
        idx = np.flatnonzero(cap_f)
        lab1[idx] = OTHER
        itub1[idx] = 0
        fibres = np.clip(1 - np.abs(nf1[idx]) / 0.6, 0, 1)
        p1[idx] = 0.3 + 0.25 * fibres
        c1[idx] = 0.25
        h1[idx] = 0.0
        comp1[idx] = capsule_id
        pts = _hex_grid(rng, width_um, height_um, 9.0, 0.4)
        pts = pts[_sample(capsule_g, pts, gum) & (rng.random(len(pts)) < 0.6)]
        gyt, gxt = np.gradient(d_tissue)
        along = np.arctan2(_sample(gyt, pts, gum), _sample(gxt, pts, gum)) + np.pi / 2
        nuclei.add(pts[:, 0], pts[:, 1], rng.uniform(3.5, 5.5, len(pts)), 0.9, along, 1.35, capsule_id)
        del cap_f, idx, gyt, gxt

    # glomeruli and vessels, painted over their bounding boxes
    for obj in objects:
        frame = _local_frame(obj, mpp, shape)
        if frame is None:
            continue
        box, _u, _v, rho, theta = frame
        inside = (rho <= 1.0) & tissue_f[box]
        lab_box, c_box, t_box = labels[box], comp[box], inst_tub[box]
        h_box, p_box, cy_box = maps.h[box], maps.p[box], maps.c[box]
        nf, nm = noise_fine[box], noise_med[box]
        r_um = rho * obj.radius  # approximate distance from the centre, um
        t_box[inside] = 0
        c_box[inside] = -1
        if obj.kind == "glomerulus":
            counts["glomeruli"] += 1
            lab_box[inside] = GLOMERULI
            capsule_w = 1.0 + 1.0 * fib
            space = rng.uniform(3.0, 6.0) * (1 + 1.5 * fib)
            pole = rng.uniform(-np.pi, np.pi)
            lobes = _wobble(theta, _harmonics(rng, 4, 9, 0.06))
            gap_t = space * (0.1 + 0.9 * (1 - np.cos(theta - pole)) / 2)
            tuft_r = obj.radius - capsule_w - gap_t + lobes * obj.radius
            tuft = inside & (r_um < tuft_r)
            wall = inside & (r_um > obj.radius - capsule_w)
            urinary = inside & ~tuft & ~wall
            capillary = np.clip((nm - 0.2) / 0.6, 0, 1)
            matrix = 1 - capillary
            p_box[tuft] = (0.05 + (0.3 + 0.35 * fib) * matrix * (1 + 0.15 * nf))[tuft]
            cy_box[tuft] = (0.15 + 0.4 * matrix)[tuft]
            h_box[tuft] = (0.12 * matrix)[tuft]
            h_box[urinary], p_box[urinary], cy_box[urinary] = 0.0, 0.04, 0.03
            h_box[wall], p_box[wall], cy_box[wall] = 0.0, 0.75 + 0.4 * fib, 0.2
            c_box[tuft] = obj.ident
            parietal = inside & ~tuft & (r_um > obj.radius - capsule_w - 2.0)
            c_box[parietal] = obj.ident + 1_000_000
            # tuft nuclei (dense), parietal nuclei (flat, along the capsule)
            pts = _hex_grid(rng, 2 * obj.radius, 2 * obj.radius, 5.4, 0.35) + [
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
                obj.ident + 1_000_000,
            )
        elif obj.kind == "artery":
            counts["arteries"] += 1
            lab_box[inside] = OTHER
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
            c_box[media] = obj.ident
            pts = _hex_grid(rng, 2 * obj.radius, 2 * obj.radius, 5.5, 0.3) + [
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
        else:
            counts["veins"] += 1
            lab_box[inside] = OTHER
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
            c_box[wall] = obj.ident
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

    _paint_nuclei(nuclei.arrays(), maps, comp, mpp, g, gshape, noise_fine)
    del comp, inst_f, f_tub_f, d_in_f, d_lum_f, noise_med

    counts["tubules"] = int(np.count_nonzero(np.bincount(inst_tub.reshape(-1), minlength=n_tub + 1)[1:]))
    image = _compose(rng, maps, labels, stain, mpp, stain_field)
    return RenderedSlide(image=image, labels=labels, tubule_instances=inst_tub, objects=counts)


@dataclass
class _StainMaps:
    """Per-pixel stain concentrations, (H, W) float32 each (1 = a typical strong stain)."""

    h: np.ndarray  # haematoxylin: nuclei
    p: np.ndarray  # PAS: basement membranes, brush border, mesangial matrix
    c: np.ndarray  # cytoplasm / background protein (lilac-grey)


def _paint_nuclei(
    nuc: dict[str, np.ndarray],
    maps: _StainMaps,
    comp: np.ndarray,
    mpp: float,
    g: int,
    gshape: tuple[int, int],
    noise_fine: np.ndarray,
) -> None:
    """Add elliptical nuclei (darker rim, granular chromatin, nucleolus) to the stain maps in place.

    Each nucleus is drawn only where the compartment map equals its compartment, so a
    nucleus never crosses into a lumen, a membrane or a neighbouring object.
    """
    n = len(nuc["x"])
    if n == 0:
        return
    gum = g * mpp
    shape = comp.shape
    # owner of each pixel: the nearest nucleus centre, found on the geometry grid
    marks = np.zeros(gshape, np.int32)
    ix = np.clip((nuc["x"] / gum).astype(np.intp), 0, gshape[1] - 1)
    iy = np.clip((nuc["y"] / gum).astype(np.intp), 0, gshape[0] - 1)
    marks[iy, ix] = np.arange(1, n + 1, dtype=np.int32)
    dist, (oy, ox) = ndi.distance_transform_edt(marks == 0, return_indices=True)
    reach = (float(nuc["a"].max()) + 1.5) / gum
    owner_g = np.where(dist <= reach, marks[oy, ox] - 1, -1).astype(np.int32)
    del dist, oy, ox
    owner = _resize_nearest(owner_g, shape, g).reshape(-1)
    sel = np.flatnonzero(owner >= 0)
    k = owner[sel]
    width = shape[1]
    du = ((sel % width).astype(np.float32) + 0.5) * mpp - nuc["x"][k]
    dv = ((sel // width).astype(np.float32) + 0.5) * mpp - nuc["y"][k]
    cos_k, sin_k = np.cos(nuc["angle"])[k], np.sin(nuc["angle"])[k]
    u = du * cos_k + dv * sin_k
    v = -du * sin_k + dv * cos_k
    q2 = (u / nuc["a"][k]) ** 2 + (v / nuc["b"][k]) ** 2
    keep = (q2 < 1.3) & (comp.reshape(-1)[sel] == nuc["comp"][k])
    sel, k, u, v, q = sel[keep], k[keep], u[keep], v[keep], np.sqrt(q2[keep])
    amount = np.clip((1.06 - q) / 0.14, 0, 1)
    # chromatin: darker rim, granular inside, a nucleolus slightly off centre
    chrom = 0.6 + 0.45 * q**2 + 0.3 * noise_fine.reshape(-1)[sel]
    off = 0.3 * nuc["b"][k]
    nucleolus = ((u - off) ** 2 + (v + 0.3 * off) ** 2) < (0.12 * nuc["a"][k] + 0.3) ** 2
    value = nuc["dark"][k] * (chrom + 0.35 * nucleolus)
    h1, p1, c1 = maps.h.reshape(-1), maps.p.reshape(-1), maps.c.reshape(-1)
    h1[sel] = h1[sel] * (1 - amount) + value * amount
    p1[sel] = p1[sel] * (1 - 0.7 * amount) + 0.04 * amount
    c1[sel] = c1[sel] * (1 - 0.5 * amount)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-like blur of a 2-D float32 array (sigma in pixels).

    For sigma <= 1 a separable 3-tap kernel ``[w, 1 - 2w, w]`` with the same variance
    (``2w = sigma**2``) is used: four times faster than ``gaussian_filter`` at optical-blur sizes.
    """
    if sigma <= 0.2:
        return a
    if sigma > 1.0:
        return ndi.gaussian_filter(a, sigma, truncate=3.0)
    w = np.float32(sigma * sigma / 2)
    centre = np.float32(1 - 2 * w)
    rows = a * centre
    rows[1:] += w * a[:-1]
    rows[:-1] += w * a[1:]
    rows[0] += w * a[0]  # edges: replicate the border pixel
    rows[-1] += w * a[-1]
    out = rows * centre
    out[:, 1:] += w * rows[:, :-1]
    out[:, :-1] += w * rows[:, 1:]
    out[:, 0] += w * rows[:, 0]
    out[:, -1] += w * rows[:, -1]
    return out


def _compose(
    rng: np.random.Generator,
    maps: _StainMaps,
    labels: np.ndarray,
    stain: StainParams,
    mpp: float,
    stain_field: np.ndarray,
) -> np.ndarray:
    """Turn stain concentrations into RGB (Beer-Lambert), blur, add noise; (H, W, 3) uint8."""
    var = float(stain.variation)
    hue = math.radians(stain.hue_shift + 30.0 * var * rng.uniform(-1, 1))
    sat = stain.saturation * (1 + var * rng.uniform(-1, 1))
    bright = stain.brightness * (1 + 0.5 * var * rng.uniform(-1, 1))
    h_strength = stain.haematoxylin * (1 + var * rng.uniform(-1, 1))
    p_strength = stain.pas * (1 + var * rng.uniform(-1, 1))
    c_strength = 1 + 0.5 * var * rng.uniform(-1, 1)

    axis = np.ones(3, np.float32) / math.sqrt(3)

    def rotate(vec: np.ndarray) -> np.ndarray:
        """Rotate an optical-density vector about the grey axis (a hue shift)."""
        rotated = (
            vec * math.cos(hue)
            + np.cross(axis, vec) * math.sin(hue)
            + axis * (axis @ vec) * (1 - math.cos(hue))
        )
        return np.clip(rotated, 0.005, None).astype(np.float32)

    # saturation (scaling the colourful part of the optical density about its grey mean) and
    # brightness are linear in the optical density, hence applied to the stain vectors once
    def adjust(vec: np.ndarray) -> np.ndarray:
        grey = float(vec.mean())
        return ((grey + sat * (vec - grey)) / bright).astype(np.float32)

    vec_h = adjust(rotate(_OD_HAEMATOXYLIN) * h_strength)
    vec_p = adjust(rotate(_OD_PAS) * p_strength)
    vec_c = adjust(rotate(_OD_CYTOPLASM) * c_strength)
    glass = adjust(_OD_GLASS)
    heterogeneity = np.where(labels != BACKGROUND, 1 + 0.1 * stain_field, 1).astype(np.float32)
    sigma = max(0.0, stain.blur_um / mpp)
    planes = []
    for plane in (maps.h, maps.p, maps.c):
        plane *= heterogeneity
        planes.append(_blur(plane, sigma))
    del heterogeneity
    out = np.empty((*labels.shape, 3), np.uint8)
    ln10 = np.float32(-math.log(10.0))
    for ch in range(3):
        od = planes[0] * vec_h[ch]
        od += planes[1] * vec_p[ch]
        od += planes[2] * vec_c[ch]
        od += glass[ch]
        od *= ln10
        rgb = np.exp(od, out=od)
        rgb *= np.float32(255.0)
        rgb += np.float32(0.5)  # round, not truncate, when cast to uint8
        rgb += np.float32(stain.noise_sigma) * rng.standard_normal(labels.shape, dtype=np.float32)
        np.clip(rgb, 0, 255, out=rgb)
        out[..., ch] = rgb
    return out


# --------------------------------------------------------------------------- files


def _check_params(width: int, height: int, mpp: float, stain: StainParams, tissue: TissueParams) -> None:
    if (
        not (isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer)))
        or min(width, height) < 64
    ):
        raise ConfigError(
            f"width={width}, height={height}: the synthetic slide must be at least 64 x 64 pixels"
        )
    if width * height > MAX_PIXELS:
        raise ConfigError(
            f"width x height = {width * height} pixels is larger than the in-memory limit {MAX_PIXELS}; "
            "use a smaller --width/--height or a larger --mpp"
        )
    if not (isinstance(mpp, (int, float)) and 0.1 <= mpp <= 4.0):
        raise ConfigError(
            f"mpp={mpp!r}: the synthetic slide resolution must be between 0.1 and 4 um per pixel"
        )
    if not 0 <= tissue.fibrosis <= 1:
        raise ConfigError(f"fibrosis={tissue.fibrosis}: use a value between 0 (healthy) and 1 (severe)")
    if not 0 < tissue.tubule_density <= 1:
        raise ConfigError(f"tubule_density={tissue.tubule_density}: use a value in (0, 1]")
    lo, hi = tissue.tubule_radius_um
    if not 4 <= lo <= hi:
        raise ConfigError(
            f"tubule_radius_um={tissue.tubule_radius_um}: use (low, high) with 4 <= low <= high"
        )
    lo, hi = tissue.glomerulus_radius_um
    if not 10 <= lo <= hi:
        raise ConfigError(
            f"glomerulus_radius_um={tissue.glomerulus_radius_um}: use (low, high) with 10 <= low <= high"
        )
    if not 0.05 <= tissue.tissue_extent <= 1:
        raise ConfigError(f"tissue_extent={tissue.tissue_extent}: use a value in [0.05, 1]")
    if tissue.vessel_count < 0 or tissue.glomeruli_per_mm2 < 0:
        raise ConfigError("vessel_count and glomeruli_per_mm2 must not be negative")
    if not 1 <= stain.jpeg_quality <= 100:
        raise ConfigError(f"jpeg_quality={stain.jpeg_quality}: use 1-100")
    if stain.brightness <= 0 or stain.saturation < 0 or stain.noise_sigma < 0 or stain.blur_um < 0:
        raise ConfigError("stain brightness must be > 0 and saturation, noise_sigma, blur_um >= 0")


def _class_stats(labels: np.ndarray, mpp: float) -> tuple[dict[str, int], dict[str, float]]:
    counts = np.bincount(labels.ravel(), minlength=len(KIDNEY_CLASSES))[: len(KIDNEY_CLASSES)]
    pixels = {name: int(c) for name, c in zip(KIDNEY_CLASSES, counts, strict=True)}
    areas = {name: float(c) * mpp * mpp for name, c in pixels.items()}
    return pixels, areas


def generate_slide(
    out_dir: str | os.PathLike[str],
    name: str,
    *,
    seed: int,
    width: int = 3072,
    height: int = 2304,
    mpp: float = 0.5,
    stain: StainParams | None = None,
    tissue: TissueParams | None = None,
) -> SyntheticSlide:
    """Render one slide and write ``<name>.tif`` and ``<name>.labels.tif`` into ``out_dir``.

    Args:
        out_dir: Output folder (created if needed).
        name: Slide name (file stem; made file-system safe).
        seed: Random seed (same seed and parameters -> identical files).
        width: Width in pixels.
        height: Height in pixels.
        mpp: Microns per pixel of level 0 (written in the TIFF resolution tags).
        stain: Colour parameters.
        tissue: Architecture parameters.

    Returns:
        The slide's paths, size and exact per-class pixel counts and areas.
    """
    folder = ensure_writable_dir(out_dir)
    stem = safe_stem(name)
    rendered = render_slide(seed=seed, width=width, height=height, mpp=mpp, stain=stain, tissue=tissue)
    stain = stain or StainParams()
    image_path = folder / f"{stem}.tif"
    label_path = folder / f"{stem}.labels.tif"
    write_pyramid_tiff(
        image_path,
        rendered.image,
        mpp,
        compression="jpeg",
        jpeg_quality=stain.jpeg_quality,
        description=f"histoseg synthetic PAS kidney cortex, seed {seed}, generator v{GENERATOR_VERSION}",
    )
    write_pyramid_tiff(
        label_path,
        rendered.labels,
        mpp,
        compression="deflate",
        interpolation="nearest",
        colormap=KIDNEY_COLORS,
        description=describe_label_map(KIDNEY_CLASSES, KIDNEY_COLORS),
    )
    pixels, areas = _class_stats(rendered.labels, mpp)
    return SyntheticSlide(
        image_path=image_path,
        label_path=label_path,
        mpp=float(mpp),
        width=int(width),
        height=int(height),
        pixel_counts=pixels,
        areas_um2=areas,
        name=stem,
        seed=int(seed),
        objects=rendered.objects,
    )


def _split_for(index: int, n: int) -> str:
    """Deterministic split: the last slide is test, the one before it val (when n >= 3)."""
    if n >= 3 and index == n - 1:
        return "test"
    if n >= 2 and index == n - 2 + (n < 3):
        return "val"
    return "train"


def _params_record(
    n_slides: int, seed: int, width: int, height: int, mpp: float, stain: StainParams, tissue: TissueParams
) -> dict[str, Any]:
    return {
        "generator_version": GENERATOR_VERSION,
        "n_slides": int(n_slides),
        "seed": int(seed),
        "width": int(width),
        "height": int(height),
        "mpp": float(mpp),
        "stain": dataclasses.asdict(stain),
        "tissue": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(tissue).items()},
    }


def _load_cached(root: Path, params_hash: str) -> list[SyntheticSlide] | None:
    manifest_path = root / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("params_hash") != params_hash:
        return None
    slides = []
    try:
        for rec in manifest["slides"]:
            image_path, label_path = root / rec["image"], root / rec["labels"]
            if (
                image_path.stat().st_size != rec["image_bytes"]
                or label_path.stat().st_size != rec["labels_bytes"]
            ):
                return None
            slides.append(
                SyntheticSlide(
                    image_path=image_path,
                    label_path=label_path,
                    mpp=float(rec["mpp"]),
                    width=int(rec["width"]),
                    height=int(rec["height"]),
                    pixel_counts={k: int(v) for k, v in rec["pixel_counts"].items()},
                    areas_um2={k: float(v) for k, v in rec["areas_um2"].items()},
                    name=rec["name"],
                    seed=int(rec["seed"]),
                    split=rec["split"],
                    objects=dict(rec.get("objects", {})),
                )
            )
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return slides


def generate_dataset(
    root: str | os.PathLike[str],
    *,
    n_slides: int = 6,
    seed: int = 0,
    width: int = 3072,
    height: int = 2304,
    mpp: float = 0.5,
    stain: StainParams | None = None,
    tissue: TissueParams | None = None,
) -> list[SyntheticSlide]:
    """Generate (or reuse) a dataset of synthetic slides with a manifest and a slide table.

    Writes ``root/synthetic_XX.tif``, ``root/synthetic_XX.labels.tif``, ``root/slides.csv``
    (columns ``slide, labels, split, mpp, width, height, seed``, then ``px_<class>`` and
    ``area_um2_<class>``; paths relative to ``root``) and ``root/manifest.json`` (written
    last: its presence marks a complete dataset). A complete dataset made with the same
    parameters (same ``params_hash``) is reused without writing anything.

    Splits: the last slide is ``test`` and the one before ``val`` (n >= 3); with two
    slides the second is ``val``.

    Args:
        root: Dataset folder.
        n_slides: Number of slides (>= 1).
        seed: Dataset seed; slide ``i`` uses a seed derived from ``(seed, i)``.
        width: Slide width in pixels.
        height: Slide height in pixels.
        mpp: Microns per pixel.
        stain: Colour parameters (each slide jitters them by ``stain.variation``).
        tissue: Architecture parameters.

    Returns:
        One :class:`SyntheticSlide` per slide, in order.
    """
    if not isinstance(n_slides, (int, np.integer)) or n_slides < 1:
        raise ConfigError(f"n_slides={n_slides!r}: generate at least one slide")
    stain = stain or StainParams()
    tissue = tissue or TissueParams()
    _check_params(width, height, mpp, stain, tissue)
    folder = ensure_writable_dir(root)
    record = _params_record(n_slides, seed, width, height, mpp, stain, tissue)
    params_hash = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    cached = _load_cached(folder, params_hash)
    if cached is not None:
        return cached

    old_manifest = folder / "manifest.json"
    stale: set[str] = set()
    try:
        for rec in json.loads(old_manifest.read_text()).get("slides", []):
            stale.update({str(rec.get("image")), str(rec.get("labels"))})
    except (OSError, ValueError, AttributeError):
        pass
    old_manifest.unlink(missing_ok=True)

    slides = []
    for i in range(n_slides):
        slide_seed = int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])
        slide = generate_slide(
            folder,
            f"synthetic_{i:02d}",
            seed=slide_seed,
            width=width,
            height=height,
            mpp=mpp,
            stain=stain,
            tissue=tissue,
        )
        slide.split = _split_for(i, n_slides)
        slides.append(slide)
    current = {p for s in slides for p in (s.image_path.name, s.label_path.name)}
    for name in stale - current:
        if "/" not in name and name.startswith("synthetic_"):
            (folder / name).unlink(missing_ok=True)

    with atomic_path(folder / "slides.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["slide", "labels", "split", "mpp", "width", "height", "seed"]
            + [f"px_{c}" for c in KIDNEY_CLASSES]
            + [f"area_um2_{c}" for c in KIDNEY_CLASSES]
        )
        for s in slides:
            writer.writerow(
                [s.image_path.name, s.label_path.name, s.split, s.mpp, s.width, s.height, s.seed]
                + [s.pixel_counts[c] for c in KIDNEY_CLASSES]
                + [repr(s.areas_um2[c]) for c in KIDNEY_CLASSES]
            )
    manifest = {
        "dataset": "histoseg synthetic PAS kidney cortex",
        "params_hash": params_hash,
        "params": record,
        "classes": list(KIDNEY_CLASSES),
        "colors": KIDNEY_COLORS.tolist(),
        "slides": [
            {
                "name": s.name,
                "image": s.image_path.name,
                "labels": s.label_path.name,
                "split": s.split,
                "seed": s.seed,
                "mpp": s.mpp,
                "width": s.width,
                "height": s.height,
                "pixel_counts": s.pixel_counts,
                "areas_um2": s.areas_um2,
                "objects": s.objects,
                "image_bytes": s.image_path.stat().st_size,
                "labels_bytes": s.label_path.stat().st_size,
            }
            for s in slides
        ],
    }
    with atomic_path(old_manifest) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return slides


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: generate a synthetic dataset and print where it was written."""
    parser = argparse.ArgumentParser(
        prog="python -m histoseg.synthetic.generator",
        description="Generate synthetic PAS kidney cortex slides with exact label masks.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=6, help="number of slides (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--width", type=int, default=3072, help="slide width in pixels (default 3072)")
    parser.add_argument("--height", type=int, default=2304, help="slide height in pixels (default 2304)")
    parser.add_argument("--mpp", type=float, default=0.5, help="microns per pixel (default 0.5)")
    parser.add_argument("--fibrosis", type=float, default=0.0, help="0 healthy .. 1 severe (default 0)")
    args = parser.parse_args(argv)
    try:
        slides = generate_dataset(
            args.out,
            n_slides=args.n,
            seed=args.seed,
            width=args.width,
            height=args.height,
            mpp=args.mpp,
            tissue=TissueParams(fibrosis=args.fibrosis),
        )
    except HistosegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    root = Path(args.out)
    for s in slides:
        print(f"{s.split:5s} {s.image_path}  labels: {s.label_path}")
    print(f"wrote {len(slides)} slides, {root / 'manifest.json'} and {root / 'slides.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
