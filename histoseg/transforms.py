"""Batch augmentation on the device (torch only).

Geometric: per sample, a random horizontal flip and a random number of 90-degree rotations,
applied identically to image, mask and weight (label-exact: no interpolation). Colour: per
sample, brightness, contrast and saturation jitter and a per-channel gain (a cheap stand-in for
stain variation), on images in [0, 1].

Example:
    >>> import torch
    >>> from histoseg.transforms import augment_batch
    >>> g = torch.Generator().manual_seed(0)
    >>> img, mask, w = torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), torch.ones(2, 8, 8)
    >>> out = augment_batch(img, mask, w, color_jitter=0.1, generator=g)
    >>> [t.shape for t in out]
    [torch.Size([2, 3, 8, 8]), torch.Size([2, 8, 8]), torch.Size([2, 8, 8])]
"""

from __future__ import annotations

import torch


def to_float_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [0, 1] (float input is returned as float32)."""
    if image.dtype == torch.uint8:
        return image.float().div_(255.0)
    return image.float()


def augment_batch(
    image: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    color_jitter: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random flips / rot90 and colour jitter.

    Args:
        image: (N, 3, H, W) float in [0, 1] (H == W for rotations; otherwise only flips are used).
        mask: (N, H, W) int64.
        weight: (N, H, W) float.
        color_jitter: Strength of the colour jitter (0 = none); brightness +-s, contrast and
            saturation x(1 +- s), channel gains x(1 +- s/2).
        generator: Random generator (on the CPU).

    Returns:
        Augmented ``(image, mask, weight)``.
    """
    n = image.shape[0]
    square = image.shape[-1] == image.shape[-2]
    images, masks, weights = [], [], []
    flips = torch.rand(n, generator=generator) < 0.5
    turns = torch.randint(0, 4 if square else 1, (n,), generator=generator)
    for i in range(n):
        img, msk, wgt = image[i], mask[i], weight[i]
        if flips[i]:
            img, msk, wgt = img.flip(-1), msk.flip(-1), wgt.flip(-1)
        k = int(turns[i])
        if k:
            img, msk, wgt = img.rot90(k, (-2, -1)), msk.rot90(k, (-2, -1)), wgt.rot90(k, (-2, -1))
        images.append(img)
        masks.append(msk)
        weights.append(wgt)
    image, mask, weight = torch.stack(images), torch.stack(masks), torch.stack(weights)
    if color_jitter > 0:
        s = float(color_jitter)

        def uniform(*shape: int) -> torch.Tensor:
            return (torch.rand(*shape, generator=generator) * 2 - 1).to(image.device)

        brightness = uniform(n, 1, 1, 1) * s
        contrast = 1 + uniform(n, 1, 1, 1) * s
        saturation = 1 + uniform(n, 1, 1, 1) * s
        gains = 1 + uniform(n, 3, 1, 1) * (s / 2)
        mean = image.mean(dim=(1, 2, 3), keepdim=True)
        image = (image - mean) * contrast + mean + brightness
        grey = image.mean(dim=1, keepdim=True)
        image = (image - grey) * saturation + grey
        image = (image * gains).clamp_(0.0, 1.0)
    return image.contiguous(), mask.contiguous(), weight.contiguous()
