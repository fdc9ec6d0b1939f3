"""The U-Net weighted loss (Ronneberger, Fischer, Brox, MICCAI 2015).

Ronneberger et al. weight every pixel's cross-entropy by a map of class weights plus a border
term between touching objects; the map is NumPy/SciPy label code, computed per patch in the data
pipeline: :func:`histoseg.labels.weight_maps.border_weight_map` (its formula and choices are there).

**Loss normalisation**: :func:`weighted_cross_entropy` divides the weighted sum by the sum of
weights over labelled pixels, so the weighting changes the *balance* between pixels, not the
effective learning rate. With all weights 1 it equals ``F.cross_entropy(ignore_index=255)``.

Example:
    >>> import torch
    >>> from histoseg.models.losses import weighted_cross_entropy
    >>> logits, target = torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 255]]])
    >>> round(float(weighted_cross_entropy(logits, target, torch.ones(1, 1, 2))), 4)  # log 2, 255 ignored
    0.6931
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from histoseg import IGNORE_INDEX

__all__ = [
    "weighted_cross_entropy",
    "WeightedCrossEntropyLoss",
]


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Pixel-weighted cross-entropy, normalised by the sum of weights.

    ``loss = sum_x w(x) * CE(x) / sum_x w(x)`` over labelled pixels. With ``weight`` None or all
    ones this equals ``F.cross_entropy(logits, target, ignore_index=ignore_index)``. Pixels at
    ``ignore_index`` contribute nothing and get zero gradient. With no labelled pixel the loss is
    ``0 * logits.sum()`` (zero with a graph), so a batch of unlabelled patches cannot produce NaN.

    Args:
        logits: (N, C, H, W) float.
        target: (N, H, W) int64 class indices, ``ignore_index`` = unlabelled.
        weight: (N, H, W) float per-pixel weights, or None.
        ignore_index: Unlabelled value.

    Returns:
        Scalar loss.
    """
    ce = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    labelled = target != ignore_index
    w = labelled.float() if weight is None else weight.float() * labelled
    denominator = w.sum()
    if float(denominator) <= 0:
        return logits.sum() * 0.0
    return (ce * w).sum() / denominator


class WeightedCrossEntropyLoss(torch.nn.Module):
    """``nn.Module`` wrapper of :func:`weighted_cross_entropy`."""

    def __init__(self, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """See :func:`weighted_cross_entropy`."""
        return weighted_cross_entropy(logits, target, weight, self.ignore_index)
