"""Tissue versus glass.

Two rules, both documented here because area reports depend on them:

- :func:`white_pixels` — a **pixel rule** used to derive classes from label masks that do not draw
  them (the FLASH tiles leave interstitium and white space both at 0): a pixel is *white*
  (glass, lumen, empty space) when its HSV saturation is below ``sat_max`` (default 0.08) **and**
  its HSV value (brightness) is above ``val_min`` (default 0.78), after a 5 x 5 median filter of
  that decision to remove speckle. Everything else is tissue.
- :func:`tissue_mask` — a **slide rule** on a low-resolution thumbnail that decides which tiles to
  run: Otsu's threshold on saturation (clamped to ``[0.04, 0.15]`` so pale tissue survives and
  blank slides give no tissue), OR a darkness test (value < 0.75, for unstained dark debris and
  very dark stains), then small holes filled and objects smaller than ``min_area_px`` removed.

Example:
    >>> import numpy as np
    >>> from histoseg.io.tissue import white_pixels
    >>> rgb = np.full((4, 4, 3), 250, np.uint8); rgb[:2] = (200, 80, 160)
    >>> white_pixels(rgb, smooth=1).astype(int).tolist()[0], white_pixels(rgb, smooth=1)[3].tolist()
    ([0, 0, 0, 0], [True, True, True, True])
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def saturation_value(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation and value of an RGB image.

    Args:
        rgb: (H, W, 3) uint8.

    Returns:
        ``(saturation, value)``, each (H, W) float32 in [0, 1].
    """
    # Channel max/min on uint8 first (a reduction over a length-3 last axis is about 10x slower),
    # then scaled: the same float32 values as scaling first, since x / 255 is monotone.
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    vmax = np.maximum(np.maximum(red, green), blue).astype(np.float32) / np.float32(255.0)
    vmin = np.minimum(np.minimum(red, green), blue).astype(np.float32) / np.float32(255.0)
    sat = np.where(vmax > 0, (vmax - vmin) / np.maximum(vmax, 1e-6), 0.0).astype(np.float32)
    return sat, vmax


def white_pixels(
    rgb: np.ndarray, sat_max: float = 0.08, val_min: float = 0.78, smooth: int = 5
) -> np.ndarray:
    """Pixel rule: which pixels are white (glass, lumen, empty space).

    Args:
        rgb: (H, W, 3) uint8 image.
        sat_max: Maximum HSV saturation of a white pixel.
        val_min: Minimum HSV value (brightness) of a white pixel.
        smooth: Size of the median filter applied to the decision (1 = none).

    Returns:
        (H, W) bool, True where white.
    """
    sat, val = saturation_value(rgb)
    white = (sat < sat_max) & (val > val_min)
    if smooth > 1:
        white = ndimage.median_filter(white.astype(np.uint8), size=smooth) > 0
    return white


def tissue_mask(thumbnail: np.ndarray, min_area_px: int = 16, hole_area_px: int = 64) -> np.ndarray:
    """Slide rule: tissue mask of a low-resolution thumbnail.

    Args:
        thumbnail: (h, w, 3) uint8 RGB, typically 8-32 um per pixel.
        min_area_px: Connected tissue regions smaller than this (thumbnail pixels) are dropped.
        hole_area_px: Holes smaller than this inside tissue are filled.

    Returns:
        (h, w) bool, True on tissue.
    """
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_holes, remove_small_objects

    sat, val = saturation_value(thumbnail)
    sat = ndimage.uniform_filter(sat, size=3)
    try:
        threshold = float(threshold_otsu(sat)) if float(sat.max()) > float(sat.min()) else 1.0
    except ValueError:
        threshold = 1.0
    threshold = min(max(threshold, 0.04), 0.15)
    mask = (sat > threshold) | (ndimage.uniform_filter(val, size=3) < 0.75)
    mask = remove_small_holes(mask, max_size=hole_area_px)
    mask = remove_small_objects(mask, max_size=min_area_px)
    return np.asarray(mask, dtype=bool)
