"""Batch augmentation on the device (torch only).

Geometric: per sample, a random horizontal flip and a random number of 90-degree rotations
(:func:`dihedral`), applied identically to image, mask
and weight (label-exact: no interpolation). Colour: per
sample, brightness, contrast and saturation jitter and a per-channel gain, and optionally the
HED stain jitter of Tellez et al. (each stain's optical density scaled and shifted, see
:func:`hed_jitter`), on images in [0, 1].

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

# Ruifrok & Johnston (Anal. Quant. Cytol. Histol. 2001) stain vectors, rows haematoxylin, eosin,
# DAB, in optical density per RGB channel (the matrix of skimage.color.rgb2hed).
RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64)
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)


def hed_jitter(image: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Scale and shift each stain's concentration in HED space (Tellez et al. 2018).

    Colour deconvolution with the matrix of ``skimage.color.rgb2hed``: optical density
    ``od = -ln(max(I, 1e-6))`` per channel (Beer-Lambert, natural log; skimage divides it by
    ``-ln(1e-6)``), stain concentrations ``C = od @ HED_FROM_RGB``; then
    ``C' = alpha * C + beta`` and back through ``RGB_FROM_HED`` and ``I' = exp(-od')``, clipped
    to [0, 1]. With ``alpha = 1, beta = 0`` the image comes back unchanged (to float rounding);
    ``beta = 0.05`` on haematoxylin darkens a white pixel's red channel by ``exp(-0.05 * 0.65)``,
    about 3 %. The H&E vectors are not those of PAS; for PAS (and any stain) this is a
    stain-like perturbation of the two dominant absorbers, which is what Tellez et al.
    (Med. Image Anal. 2019, "Quantifying the effects of data augmentation and stain color
    normalization ...") found to generalise best across centres.

    Args:
        image: (N, 3, H, W) float RGB in [0, 1].
        alpha: (N, 3) concentration scale per sample and stain (H, E, D).
        beta: (N, 3) concentration shift per sample and stain, in optical density units.

    Returns:
        (N, 3, H, W) float image in [0, 1], same dtype and device as ``image``.
    """
    dtype = image.dtype
    hed_from_rgb = HED_FROM_RGB.to(image.device, torch.float32)
    rgb_from_hed = RGB_FROM_HED.to(image.device, torch.float32)
    od = -torch.log(image.float().clamp(min=1e-6))  # (N, 3, H, W)
    conc = torch.einsum("nchw,cs->nshw", od, hed_from_rgb)
    conc = conc * alpha.to(conc)[:, :, None, None] + beta.to(conc)[:, :, None, None]
    od = torch.einsum("nshw,sc->nchw", conc, rgb_from_hed)
    return torch.exp(-od).clamp_(0.0, 1.0).to(dtype)


def dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """One of the 8 symmetries of the square: rotate by ``k`` quarter turns, then mirror left-right.

    Args:
        x: (..., H, W) tensor; ``H == W`` when ``k`` is odd.
        k: Quarter turns counter-clockwise (any integer; taken mod 4).
        flip: Mirror the last axis after rotating.

    Returns:
        The transformed tensor (same shape when square).
    """
    out = torch.rot90(x, k % 4, dims=(-2, -1))
    return out.flip(-1) if flip else out


def undo_dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Inverse of :func:`dihedral`: ``undo_dihedral(dihedral(x, k, f), k, f) == x``."""
    out = x.flip(-1) if flip else x
    return torch.rot90(out, -(k % 4), dims=(-2, -1))


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
    stain_jitter: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random flips / rot90, colour jitter and HED stain jitter.

    Args:
        image: (N, 3, H, W) float in [0, 1] (H == W for rotations; otherwise only flips are used).
        mask: (N, H, W) int64.
        weight: (N, H, W) float.
        color_jitter: Strength of the colour jitter (0 = none); brightness +-s, contrast and
            saturation x(1 +- s), channel gains x(1 +- s/2).
        generator: Random generator (on the CPU).
        stain_jitter: Strength ``sigma`` of the HED stain jitter (0 = none): per sample and
            stain, ``alpha ~ U(1 - sigma, 1 + sigma)``, ``beta ~ U(-sigma, sigma)``
            (:func:`hed_jitter`; Tellez et al. called 0.05 "light" and 0.2 "strong"). Applied
            before the colour jitter.

    Returns:
        Augmented ``(image, mask, weight)``.
    """
    n = image.shape[0]
    square = image.shape[-1] == image.shape[-2]
    images, masks, weights = [], [], []
    flips = torch.rand(n, generator=generator) < 0.5
    turns = torch.randint(0, 4 if square else 1, (n,), generator=generator)
    for i in range(n):
        # flip first, then k quarter turns: rot_k(flip(x)) = flip(rot_-k(x)) = dihedral(x, -k, True)
        flip = bool(flips[i])
        k = -int(turns[i]) if flip else int(turns[i])
        images.append(dihedral(image[i], k, flip))
        masks.append(dihedral(mask[i], k, flip))
        weights.append(dihedral(weight[i], k, flip))
    image, mask, weight = torch.stack(images), torch.stack(masks), torch.stack(weights)

    def uniform(*shape: int) -> torch.Tensor:
        """U(-1, 1) draws from ``generator``, on the image's device."""
        return (torch.rand(*shape, generator=generator) * 2 - 1).to(image.device)

    if stain_jitter > 0:
        sigma = float(stain_jitter)
        alpha = 1 + uniform(n, 3) * sigma
        beta = uniform(n, 3) * sigma
        image = hed_jitter(image, alpha, beta)
    if color_jitter > 0:
        s = float(color_jitter)
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
