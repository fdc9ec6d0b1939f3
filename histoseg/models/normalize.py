"""The normalisation every network starts with, and the ImageNet statistics it uses by default.

Networks take RGB images scaled to [0, 1] and normalise them as their first layer, so the
normalisation travels with the checkpoint and prediction never has to know it.

Example:
    >>> import torch
    >>> from histoseg.models.normalize import Normalize
    >>> Normalize((0.5,), (0.25,))(torch.full((1, 1, 2, 2), 0.75)).flatten().tolist()
    [1.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from histoseg.errors import ConfigError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet RGB images in [0, 1] (the torchvision/timm convention)."""

IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet RGB images in [0, 1]."""


class Normalize(nn.Module):
    """Fixed per-channel normalisation ``(x - mean) / std`` (no parameters, two buffers).

    A pointwise layer: it commutes with cropping and padding, so
    :func:`histoseg.models.convolutionalize.convolutionalize` keeps it as it is. The buffers (state-dict keys
    ``mean`` and ``std``, shape (1, C, 1, 1), float32) are cast to the input's dtype.

    Args:
        mean: Per-channel mean of the [0, 1] input (length = number of channels).
        std: Per-channel standard deviation (same length, all > 0).

    Raises:
        ConfigError: ``mean`` and ``std`` of different or zero length, or a ``std`` <= 0.

    Shapes:
        Input ``(N, C, ...)`` float; output the same shape and dtype.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        if len(mean) != len(std) or len(mean) == 0:
            raise ConfigError(
                f"Normalize: mean ({len(mean)} values) and std ({len(std)} values) must have the same "
                "non-zero length"
            )
        if min(std) <= 0:
            raise ConfigError(f"Normalize: std must be > 0, got {tuple(std)}")
        self.register_buffer(
            "mean", torch.tensor([float(m) for m in mean], dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer(
            "std", torch.tensor([float(s) for s in std], dtype=torch.float32).view(1, -1, 1, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` of shape (N, C, ...) channel-wise."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.to(x.dtype).view(shape)) / self.std.to(x.dtype).view(shape)

    def extra_repr(self) -> str:
        """Show the statistics in ``print(model)``."""
        mean = [round(v, 4) for v in self.mean.flatten().tolist()]
        std = [round(v, 4) for v in self.std.flatten().tolist()]
        return f"mean={mean}, std={std}"


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Normalize"]
