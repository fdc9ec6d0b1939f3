"""Parameters of the synthetic slides: version, size limit, class colours, stain and tissue knobs, checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histoseg.errors import ConfigError

GENERATOR_VERSION = 1
"""Bumped whenever the same parameters would paint different pixels (invalidates caches)."""

MAX_PIXELS = 48_000_000
"""Largest slide (width x height) rendered in memory."""

KIDNEY_COLORS: np.ndarray = np.array(
    [[255, 255, 255], [240, 200, 80], [60, 160, 220], [220, 40, 120], [120, 200, 90]], dtype=np.uint8
)
"""(5, 3) uint8 display colours of the kidney classes (the label TIFFs' palette)."""

BACKGROUND, INTERSTITIUM, TUBULES, GLOMERULI, OTHER = range(5)
"""Class indices of :data:`histoseg.KIDNEY_CLASSES` as painted in the label map."""


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


def check_params(width: int, height: int, mpp: float, stain: StainParams, tissue: TissueParams) -> None:
    """Refuse a slide size, resolution or parameter the generator cannot paint.

    Raises:
        ConfigError: naming the offending value and the accepted range.
    """
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
    _check_tissue(tissue)
    _check_stain(stain)


def _check_tissue(tissue: TissueParams) -> None:
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


def _check_stain(stain: StainParams) -> None:
    if not 1 <= stain.jpeg_quality <= 100:
        raise ConfigError(f"jpeg_quality={stain.jpeg_quality}: use 1-100")
    if stain.brightness <= 0 or stain.saturation < 0 or stain.noise_sigma < 0 or stain.blur_um < 0:
        raise ConfigError("stain brightness must be > 0 and saturation, noise_sigma, blur_um >= 0")
