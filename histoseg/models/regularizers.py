"""Losses for sparse labels (grid points, scribbles): partial cross-entropy and regularisers.

Pure torch, no Lightning. With labels on a few percent of the pixels, cross-entropy over
the labelled pixels alone ("partial cross-entropy") already trains a segmentation network;
regularisers on the unlabelled pixels close much of the gap to dense training
(Tang et al., "On Regularized Losses for Weakly-supervised CNN Segmentation", ECCV 2018):

- :func:`partial_cross_entropy` — mean cross-entropy over labelled pixels only (0 with a
  gradient when nothing is labelled, where ``F.cross_entropy`` returns nan);
- :func:`entropy_loss` — mean Shannon entropy of the softmax (entropy minimisation,
  Grandvalet & Bengio, NIPS 2005): pushes unlabelled pixels towards confident predictions;
- :func:`crf_loss` — the Potts / dense-CRF relaxation of Tang et al.
  ``sum_ij W_ij S_i^T (1 - S_j)`` with a Gaussian bilateral affinity ``W_ij`` restricted to a
  local window: pixels that look alike and lie close together should get the same class.

Example:
    >>> import torch
    >>> from histoseg.models.regularizers import crf_loss, partial_cross_entropy
    >>> logits = torch.zeros(1, 3, 4, 4, requires_grad=True)
    >>> target = torch.full((1, 4, 4), 255); target[0, 0, 0] = 1
    >>> round(float(partial_cross_entropy(logits, target).detach()), 4)  # log(3)
    1.0986
    >>> onehot = torch.tensor([10.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    >>> float(crf_loss(onehot * 100, torch.rand(1, 3, 4, 4)))
    0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from histoseg import IGNORE_INDEX
from histoseg.errors import ConfigError, LabelError


def partial_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy averaged over labelled pixels only (Tang et al. 2018, eq. 2).

    Equals ``F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)``
    (with class weights: ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` over labelled pixels), except
    that with no labelled pixel it returns 0 connected to the graph (zero gradient) instead
    of nan.

    Args:
        logits: (N, C, H, W) (or (N, C)) float logits.
        target: (N, H, W) (or (N,)) integer class indices; ``ignore_index`` = unlabelled.
        ignore_index: Label value of unlabelled pixels.
        weight: Optional (C,) class weights.

    Returns:
        Scalar loss.

    Raises:
        LabelError: a labelled value is not a class index of the model.
    """
    target = target.long()
    labelled = target != ignore_index
    num_classes = logits.shape[1]
    if labelled.any():
        top = int(target[labelled].max())
        low = int(target[labelled].min())
        if top >= num_classes or low < 0:
            bad = top if top >= num_classes else low
            raise LabelError(
                f"labels contain class index {bad} but the model has {num_classes} classes "
                f"(0-{num_classes - 1}, {ignore_index} = unlabelled); fix the label values or the class list"
            )
    else:
        return logits.sum() * 0.0
    per_pixel = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="none")
    if weight is None:
        denom = labelled.sum().to(per_pixel.dtype)
    else:
        denom = weight.to(per_pixel.dtype)[target[labelled]].sum()
    return per_pixel.sum() / denom


def entropy_loss(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Shannon entropy (nats) of the softmax (Grandvalet & Bengio 2005).

    ``H_i = -sum_c p_ic log p_ic``; minimising it makes predictions confident where there is
    no label. Computed from ``log_softmax`` (stable for large logits). 0 for one-hot
    predictions, ``log C`` for uniform ones.

    Args:
        logits: (N, C, H, W) (or (N, C)) float logits.
        mask: Optional bool (N, H, W) (or (N,)): pixels to average over, typically the
            unlabelled ones (``target == 255``). None = all pixels.

    Returns:
        Scalar loss; 0 (connected to the graph) when ``mask`` selects no pixel.
    """
    log_p = F.log_softmax(logits, dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1)
    if mask is None:
        return entropy.mean()
    mask = mask.to(torch.bool)
    if mask.shape != entropy.shape:
        raise ValueError(
            f"entropy_loss: mask shape {tuple(mask.shape)} != pixel shape {tuple(entropy.shape)}"
        )
    count = mask.sum()
    if int(count) == 0:
        return logits.sum() * 0.0
    return (entropy * mask).sum() / count.to(entropy.dtype)


def crf_loss(
    logits: torch.Tensor,
    image: torch.Tensor,
    *,
    sigma_rgb: float = 0.1,
    sigma_xy: float = 5.0,
    kernel_size: int = 5,
) -> torch.Tensor:
    """Local dense-CRF (Potts) relaxation loss of Tang et al., ECCV 2018.

    ``L = (1 / (N H W)) sum_i sum_{j in window(i), j != i} W_ij p_i^T (1 - p_j)`` with
    ``p = softmax(logits)`` and the bilateral Gaussian affinity
    ``W_ij = exp(-|I_i - I_j|^2 / (2 sigma_rgb^2) - |x_i - x_j|^2 / (2 sigma_xy^2))``.
    The sum runs over **ordered** pairs (each unordered pair counts twice) inside a
    ``kernel_size`` x ``kernel_size`` window, without padding (pairs must both lie in the
    image), and is divided by the number of pixels ``N H W``. Since ``sum_c p_ic = 1``,
    ``p_i^T (1 - p_j) = 1 - p_i . p_j``: the loss is 0 when neighbours agree with certainty,
    and it costs more to cut between similar pixels (inside a uniform region) than across an
    image edge. Implemented with shifted views, one offset at a time (memory ~ one image);
    gradients flow to ``logits`` only.

    Args:
        logits: (N, C, H, W) float logits.
        image: (N, K, H, W) image (any channels, usually RGB) in [0, 1]; uint8 is divided by 255.
        sigma_rgb: Colour bandwidth (image units).
        sigma_xy: Spatial bandwidth in pixels.
        kernel_size: Odd window size (5 or 7 typical).

    Returns:
        Scalar loss.
    """
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ConfigError(f"crf kernel_size {kernel_size} must be an odd number >= 3 (e.g. 5 or 7)")
    if not (sigma_rgb > 0 and sigma_xy > 0):
        raise ConfigError(f"crf sigmas must be > 0 (sigma_rgb={sigma_rgb}, sigma_xy={sigma_xy})")
    if (
        logits.ndim != 4
        or image.ndim != 4
        or image.shape[0] != logits.shape[0]
        or image.shape[2:] != logits.shape[2:]
    ):
        raise ValueError(
            f"crf_loss: logits {tuple(logits.shape)} and image {tuple(image.shape)} must be (N, C, H, W) "
            "and (N, K, H, W) with the same N, H, W"
        )
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    image = image.detach().to(logits.dtype if logits.is_floating_point() else torch.float32)
    prob = torch.softmax(logits, dim=1)
    n, _, height, width = prob.shape
    half = kernel_size // 2
    total = logits.new_zeros(())
    inv_rgb = 1.0 / (2.0 * sigma_rgb * sigma_rgb)
    inv_xy = 1.0 / (2.0 * sigma_xy * sigma_xy)
    # Offsets (dy, dx) with (dy, dx) > (0, 0) lexicographically; (-dy, -dx) gives the same sum.
    for dy in range(0, half + 1):
        for dx in range(-half, half + 1):
            if dy == 0 and dx <= 0:
                continue
            if dy >= height or abs(dx) >= width:
                continue
            # Pixel pairs i = (y, x), j = (y + dy, x + dx), both inside the image.
            x0, x1 = max(0, -dx), width - max(0, dx)
            p_i = prob[:, :, 0 : height - dy, x0:x1]
            p_j = prob[:, :, dy:height, x0 + dx : x1 + dx]
            i_i = image[:, :, 0 : height - dy, x0:x1]
            i_j = image[:, :, dy:height, x0 + dx : x1 + dx]
            colour = ((i_i - i_j) ** 2).sum(dim=1)
            affinity = torch.exp(-colour * inv_rgb - (dy * dy + dx * dx) * inv_xy)
            disagree = 1.0 - (p_i * p_j).sum(dim=1)
            total = total + 2.0 * (affinity * disagree).sum()
    return total / (n * height * width)


__all__ = [
    "crf_loss",
    "entropy_loss",
    "partial_cross_entropy",
]
