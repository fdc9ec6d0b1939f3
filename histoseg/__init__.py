"""histoseg: semantic segmentation and area quantification of histology whole-slide images.

A PyTorch Lightning plugin: U-Net and patch-classifier tasks, datamodules over
whole-slide images with dense, grid-point or scribble labels at a physical
resolution (microns per pixel), streamed slide inference and per-slide area reports.
"""

from __future__ import annotations

__version__ = "0.1.0"

KIDNEY_CLASSES: tuple[str, ...] = ("background", "interstitium", "tubules", "glomeruli", "other")
"""Class names of the kidney models, in label-index order (0 = background/glass)."""

IGNORE_INDEX: int = 255
"""Label value of unlabelled pixels: they contribute neither to losses nor to metrics."""

__all__ = ["IGNORE_INDEX", "KIDNEY_CLASSES", "__version__"]
