"""Sanity checks on a slide prediction, so that a broken model or slide never yields areas that look valid.

- :func:`slide_problem`: a slide resolution outside :data:`histoseg.io.slide.MPP_RANGE`, or so much
  coarser than the model's that the label map would be a huge upsampling;
- :func:`prediction_problem`: non-finite logits (counted per tile by
  :func:`histoseg.inference.predict.predict_slide`; a diverged training produces them and their
  argmax is meaningless), no tissue found on the thumbnail, or tissue found
  but every pixel predicted background (glass);
- :func:`tissue_problem`: "tissue" that no stain makes: the thumbnail's tissue pixels are nearly all
  black (a failed scan, a wrong bit depth, an empty channel) or one flat colour (no texture). The
  tissue mask takes dark pixels for tissue (unstained debris, very dark stains), so an all-black
  slide is otherwise all tissue, and a model predicts some class everywhere on it.

Each problem is a ``(status, reason)`` pair that :mod:`histoseg.quantify` records in the report.
"""

from __future__ import annotations

import numpy as np

from histoseg.io.slide import MPP_RANGE, Slide

MAX_UPSAMPLING = 8.0
"""A slide may be at most this many times coarser than the model's resolution (the label map is made
at the model's mpp: a coarser slide is upsampled, and the label map grows with the square)."""


BLACK_LEVEL = 16
"""A thumbnail pixel whose brightest channel is at most this (of 255) is black."""
BLACK_FRACTION = 0.9
"""Tissue of which at least this fraction is black is not stained tissue."""
FLAT_STD = 4.0
"""Tissue whose every RGB channel varies by less than this standard deviation (of 255 grey levels) is one
flat colour: stained tissue varies by tens (nuclei, cytoplasm, lumina), and even a pale or out-of-focus
scan by more than ten; scanner noise alone is about 1-3."""


def tissue_problem(thumbnail: np.ndarray, tissue: np.ndarray) -> tuple[str, str] | None:
    """``("implausible_tissue", reason)`` when the tissue found cannot be stained tissue, else None.

    Args:
        thumbnail: (h, w, 3) uint8 RGB thumbnail of the slide.
        tissue: (h, w) bool tissue mask of the thumbnail (:func:`histoseg.io.tissue.tissue_mask`).

    Example:
        >>> black = np.zeros((64, 64, 3), np.uint8)
        >>> tissue_problem(black, np.ones((64, 64), bool))[0]
        'implausible_tissue'
        >>> texture = np.random.default_rng(0).integers(60, 220, (64, 64, 3), dtype=np.uint8)
        >>> tissue_problem(texture, np.ones((64, 64), bool)) is None
        True
    """
    pixels = np.asarray(thumbnail)[np.asarray(tissue, dtype=bool)]
    if pixels.size == 0:
        return None
    black = float(np.mean(pixels.max(axis=1) <= BLACK_LEVEL))
    spread = float(pixels.astype(np.float64).std(axis=0).max())
    fix = (
        "; no areas are reported for it: check that the slide opens correctly in a viewer "
        "(rescan it, or export it again as 8-bit RGB)"
    )
    if black >= BLACK_FRACTION:
        return (
            "implausible_tissue",
            f"{black:.0%} of the tissue found is black (every channel <= {BLACK_LEVEL} of 255), not stained "
            f"tissue: a failed scan, a wrong bit depth or an empty channel{fix}",
        )
    if spread < FLAT_STD:
        colour = ", ".join(str(int(v)) for v in np.median(pixels, axis=0))
        return (
            "implausible_tissue",
            f"the tissue found is one flat colour (RGB {colour}, standard deviation {spread:.1f} of 255; "
            f"stained tissue varies by tens), not stained tissue{fix}",
        )
    return None


def slide_problem(slide: Slide, model_mpp: float) -> str | None:
    """Why a slide's resolution cannot give a valid label map at ``model_mpp`` (None when it can)."""
    low, high = MPP_RANGE
    source = f"{slide.mpp:g} microns per pixel ({slide.mpp_source})"
    if not low <= slide.mpp <= high:
        return (
            f"resolution {source} is outside {low:g}-{high:g}; the file's metadata is wrong, so give the "
            "true value with --mpp (or mpp: in the slide table)"
        )
    if slide.mpp > MAX_UPSAMPLING * model_mpp:
        return (
            f"resolution {source} is {slide.mpp / model_mpp:.0f}x coarser than the model's {model_mpp:g}; "
            "check the slide's mpp (--mpp), or use a model trained at a coarser resolution"
        )
    return None


def prediction_problem(
    tiles_run: int, bad_tiles: int, foreground_pixels: int, tissue_pixels: int
) -> tuple[str, str] | None:
    """``(status, reason)`` when a prediction's areas are not valid, else None.

    Args:
        tiles_run: Tiles run through the model.
        bad_tiles: Of those, tiles with NaN or infinite logits.
        foreground_pixels: Label-map pixels predicted as any class other than background.
        tissue_pixels: Thumbnail pixels of the tissue mask.
    """
    if bad_tiles:
        return (
            "nonfinite_logits",
            f"the model produced NaN or infinite logits in {bad_tiles} of {tiles_run} tiles, so the areas "
            "are meaningless; the checkpoint is from a diverged training: retrain with a lower model.lr",
        )
    if tissue_pixels == 0 or tiles_run == 0:
        return (
            "no_tissue",
            "no tissue found on the slide's thumbnail (blank, white or unreadable pixels), so there are no "
            "areas; check that the slide opens correctly in a viewer",
        )
    if foreground_pixels == 0:
        return (
            "all_glass",
            "tissue was found but the model predicted background (glass) everywhere, so the areas are not "
            "valid; check that the model fits this stain and resolution",
        )
    return None
