"""Staining and compositing: stain concentrations -> optical density -> RGB, with optical blur and sensor noise.

Colours are made in optical density with a two-stain model (haematoxylin + PAS, plus a
cytoplasm colour), Beer-Lambert as in Ruifrok & Johnston 2001 colour deconvolution; the
stain vectors are jittered per slide (:attr:`StainParams.variation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from histoseg.synthetic.canvas import StainMaps
from histoseg.synthetic.params import BACKGROUND, StainParams

# Optical densities (-log10(rgb / 255)) of unit stain concentration, measured on PAS mouse
# kidney (the example tiles of Bouteldja et al., JASN 2021).
OD_HAEMATOXYLIN = np.array([0.537, 0.520, 0.266], np.float32)  # nucleus rgb (74, 77, 138)
OD_PAS = np.array([0.23, 0.63, 0.20], np.float32)  # basement membrane rgb (150, 60, 160)
OD_CYTOPLASM = np.array([0.197, 0.248, 0.139], np.float32)  # tubular cytoplasm rgb (162, 144, 185)
OD_GLASS = np.array([0.022, 0.034, 0.019], np.float32)  # glass rgb (242, 236, 244)


@dataclass(frozen=True)
class StainVectors:
    """Optical density (3,) float32 of unit concentration of each stain on one slide, and of the glass."""

    h: np.ndarray
    p: np.ndarray
    c: np.ndarray
    glass: np.ndarray


def stain_vectors(rng: np.random.Generator, stain: StainParams) -> StainVectors:
    """The slide's stain colours: hue rotation, saturation, brightness and strengths, jittered by the slide."""
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

    return StainVectors(
        h=adjust(rotate(OD_HAEMATOXYLIN) * h_strength),
        p=adjust(rotate(OD_PAS) * p_strength),
        c=adjust(rotate(OD_CYTOPLASM) * c_strength),
        glass=adjust(OD_GLASS),
    )


def compose(
    rng: np.random.Generator,
    maps: StainMaps,
    labels: np.ndarray,
    stain: StainParams,
    mpp: float,
    stain_field: np.ndarray,
) -> np.ndarray:
    """Turn stain concentrations into RGB (Beer-Lambert), blur, add noise.

    Args:
        rng: The slide's random generator.
        maps: (H, W) stain concentrations; modified in place (scaled by the heterogeneity).
        labels: (H, W) uint8 label map (glass gets no stain heterogeneity).
        stain: Colour parameters.
        mpp: Microns per pixel (for the optical blur).
        stain_field: (H, W) float32 slow unit-variance noise: the stain heterogeneity.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    vec = stain_vectors(rng, stain)
    heterogeneity = np.where(labels != BACKGROUND, 1 + 0.1 * stain_field, 1).astype(np.float32)
    sigma = max(0.0, stain.blur_um / mpp)
    planes = []
    for plane in (maps.h, maps.p, maps.c):
        plane *= heterogeneity
        planes.append(blur(plane, sigma))
    del heterogeneity
    out = np.empty((*labels.shape, 3), np.uint8)
    ln10 = np.float32(-math.log(10.0))
    for ch in range(3):
        od = planes[0] * vec.h[ch]
        od += planes[1] * vec.p[ch]
        od += planes[2] * vec.c[ch]
        od += vec.glass[ch]
        od *= ln10
        rgb = np.exp(od, out=od)
        rgb *= np.float32(255.0)
        rgb += np.float32(0.5)  # round, not truncate, when cast to uint8
        rgb += np.float32(stain.noise_sigma) * rng.standard_normal(labels.shape, dtype=np.float32)
        np.clip(rgb, 0, 255, out=rgb)
        out[..., ch] = rgb
    return out


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
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
