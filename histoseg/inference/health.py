"""Sanity checks on a slide prediction, so that a broken model or slide never yields areas that look valid.

- :func:`slide_problem`: a slide resolution outside :data:`histoseg.io.slide.MPP_RANGE`, or so much
  coarser than the model's that the label map would be a huge upsampling;
- :func:`prediction_problem`: non-finite logits (counted per tile by
  :func:`histoseg.inference.predict.predict_slide`; a diverged training produces them and their
  argmax is meaningless), no tissue found on the thumbnail, or tissue found
  but every pixel predicted background (glass).

Each problem is a ``(status, reason)`` pair that :mod:`histoseg.quantify` records in the report.
"""

from __future__ import annotations

from histoseg.io.slide import MPP_RANGE, Slide

MAX_UPSAMPLING = 8.0
"""A slide may be at most this many times coarser than the model's resolution (the label map is made
at the model's mpp: a coarser slide is upsampled, and the label map grows with the square)."""


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
