"""Sanity checks on a slide prediction, so that a broken model or slide never yields areas that look valid.

- :class:`FiniteWatch` wraps a model and counts NaN/infinite logits (a diverged training produces
  them; their argmax is meaningless);
- :func:`slide_problem`: a slide resolution outside :data:`histoseg.io.slide.MPP_RANGE`, or so much
  coarser than the model's that the label map would be a huge upsampling;
- :func:`prediction_problem`: non-finite logits, no tissue found on the thumbnail, or tissue found
  but every pixel predicted background (glass).

Each problem is a ``(status, reason)`` pair that :mod:`histoseg.quantify` records in the report.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from histoseg.io.slide import MPP_RANGE, Slide

MAX_UPSAMPLING = 8.0
"""A slide may be at most this many times coarser than the model's resolution (the label map is made
at the model's mpp: a coarser slide is upsampled, and the label map grows with the square)."""


class FiniteWatch(nn.Module):
    """Runs ``model`` unchanged and counts the tiles whose logits hold NaN or infinite values.

    Args:
        model: Maps (N, 3, H, W) images to (N, C, H, W) logits.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.tiles = 0
        self.bad_tiles = 0

    def reset(self) -> None:
        """Start counting a new slide."""
        self.tiles = 0
        self.bad_tiles = 0

    def forward(self, x: torch.Tensor) -> Any:
        """The wrapped model's logits, counted."""
        logits = self.model(x)
        if isinstance(logits, torch.Tensor) and logits.ndim >= 1:
            finite = torch.isfinite(logits.reshape(logits.shape[0], -1)).all(dim=1)
            self.tiles += int(finite.numel())
            self.bad_tiles += int((~finite).sum())
        return logits


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
