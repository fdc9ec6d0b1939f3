"""The output-resolution canvas being painted: labels, stain concentrations, nucleus compartments, noise.

The painting stages (:mod:`~histoseg.synthetic.interstitium`, :mod:`~histoseg.synthetic.tubules`,
:mod:`~histoseg.synthetic.capsule`, :mod:`~histoseg.synthetic.glomeruli`,
:mod:`~histoseg.synthetic.vessels`, :mod:`~histoseg.synthetic.nuclei`) write into it in place;
:func:`histoseg.synthetic.compose.compose` turns its stain maps into RGB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histoseg.synthetic.cells import TubuleCells
from histoseg.synthetic.fields import resize_bilinear, resize_nearest, smooth_noise, upsampled_noise
from histoseg.synthetic.layout import Grid, Outline, Structure, local_frame
from histoseg.synthetic.params import BACKGROUND, INTERSTITIUM, TUBULES


@dataclass
class StainMaps:
    """Per-pixel stain concentrations, (H, W) float32 each (1 = a typical strong stain).

    Attributes:
        h: Haematoxylin: nuclei.
        p: PAS: basement membranes, brush border, mesangial matrix.
        c: Cytoplasm / background protein (lilac-grey).
    """

    h: np.ndarray
    p: np.ndarray
    c: np.ndarray


@dataclass
class Canvas:
    """The slide being painted, (H, W) arrays on the output grid.

    Attributes:
        labels: uint8 class indices (the label map being painted).
        tubules: int32 tubule instance ids (0 = not a tubule).
        comp: int32 nucleus compartment (-1: none, 0: interstitium, tubule ids, structure ids):
            a nucleus is drawn only inside its own compartment.
        maps: The stain concentrations.
        tissue: bool, inside the tissue outline.
        noise_fine: float32 unit-variance noise with ~1 um features.
        noise_med: float32 unit-variance noise with ~3.5 um features.
        stain_field: float32 slow (~150 um) stain heterogeneity used by the colour stage.
    """

    labels: np.ndarray
    tubules: np.ndarray
    comp: np.ndarray
    maps: StainMaps
    tissue: np.ndarray
    noise_fine: np.ndarray
    noise_med: np.ndarray
    stain_field: np.ndarray


def new_canvas(rng: np.random.Generator, grid: Grid, outline: Outline, cells: TubuleCells) -> Canvas:
    """Canvas with the tissue (interstitium) and tubule labels, empty stain maps and the noise fields."""
    shape, g, gshape, gum = grid.shape, grid.g, grid.gshape, grid.gum
    tissue_f = resize_bilinear(outline.d_tissue, shape, g) > 0
    inst_f = resize_nearest(cells.inst, shape, g)
    f_tub_f = resize_bilinear(cells.f_tub, shape, g)
    tubule_f = (f_tub_f > 0) & (inst_f >= 1) & tissue_f
    del f_tub_f
    labels = np.where(tissue_f, INTERSTITIUM, BACKGROUND).astype(np.uint8)
    labels[tubule_f] = TUBULES
    inst_tub = np.where(tubule_f, inst_f, 0).astype(np.int32)
    del inst_f, tubule_f
    noise_fine = upsampled_noise(rng, shape, gshape, g, 1.0 / gum)
    noise_med = upsampled_noise(rng, shape, gshape, g, 3.5 / gum)
    stain_field = resize_bilinear(smooth_noise(rng, gshape, 150 / gum), shape, g)
    maps = StainMaps(
        h=np.zeros(shape, np.float32), p=np.zeros(shape, np.float32), c=np.zeros(shape, np.float32)
    )
    return Canvas(
        labels=labels,
        tubules=inst_tub,
        comp=np.full(shape, -1, np.int32),
        maps=maps,
        tissue=tissue_f,
        noise_fine=noise_fine,
        noise_med=noise_med,
        stain_field=stain_field,
    )


@dataclass
class Patch:
    """A structure's bounding box on the canvas: writable views and local coordinates, (h, w) each.

    Attributes:
        obj: The structure.
        inside: bool, inside the structure's outline and the tissue.
        rho: Normalised elliptical radius (1 on the outline).
        theta: Polar angle, radians.
        r_um: Approximate distance from the centre, um (``rho * radius``).
        labels: View of :attr:`Canvas.labels`.
        comp: View of :attr:`Canvas.comp`.
        h: View of the haematoxylin map.
        p: View of the PAS map.
        c: View of the cytoplasm map.
        nf: View of :attr:`Canvas.noise_fine`.
        nm: View of :attr:`Canvas.noise_med`.
    """

    obj: Structure
    inside: np.ndarray
    rho: np.ndarray
    theta: np.ndarray
    r_um: np.ndarray
    labels: np.ndarray
    comp: np.ndarray
    h: np.ndarray
    p: np.ndarray
    c: np.ndarray
    nf: np.ndarray
    nm: np.ndarray


def open_patch(canvas: Canvas, obj: Structure, mpp: float) -> Patch | None:
    """The structure's patch, with the tubules and nucleus compartments it covers cleared; None if off-slide."""
    frame = local_frame(obj, mpp, canvas.labels.shape)
    if frame is None:
        return None
    box, rho = frame.box, frame.rho
    inside = (rho <= 1.0) & canvas.tissue[box]
    maps = canvas.maps
    patch = Patch(
        obj=obj,
        inside=inside,
        rho=rho,
        theta=frame.theta,
        r_um=rho * obj.radius,
        labels=canvas.labels[box],
        comp=canvas.comp[box],
        h=maps.h[box],
        p=maps.p[box],
        c=maps.c[box],
        nf=canvas.noise_fine[box],
        nm=canvas.noise_med[box],
    )
    canvas.tubules[box][inside] = 0
    patch.comp[inside] = -1
    return patch
