"""Patch classifiers that can be convolutionalized into dense predictors.

This module owns the pure ``nn.Module`` patch classifiers of the classifier route
(docs/methods.md section 3): a CNN maps a float32 patch ``(N, 3, P, P)`` in [0, 1] to class
logits ``(N, C)`` (the class of the patch's centre pixel). Both classifiers keep the spatial
layout up to a *flattened* final feature map (no global pooling), so
:func:`histoseg.models.convolutionalize.convolutionalize` can turn them into fully convolutional networks
(Long, Shelhamer, Darrell, CVPR 2015) that score every pixel of a large image.

- :class:`PlainPatchClassifier`: an ``nn.Sequential`` of 'valid' (unpadded) 3x3 conv /
  BatchNorm / ReLU / 2x2 max-pool blocks and a dense head, as in the classic Keras lecture
  model. Because no layer pads, dense prediction is *exact*: the FCN score at a pixel
  equals the classifier applied to the patch there.
- :class:`EncoderPatchClassifier`: a timm encoder trunk (random init or a local weights
  file, never a download) and the same kind of dense head on the flattened feature map.
  timm trunks zero-pad their convolutions, so their dense prediction is *not* exact (see
  the class docstring).

Both take images in [0, 1]; the normalisation is the first layer
(:class:`histoseg.models.normalize.Normalize`).

Example:
    >>> import torch
    >>> from histoseg.models.classifiers import PlainPatchClassifier
    >>> clf = PlainPatchClassifier(num_classes=5, patch_size=64).eval()
    >>> clf(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 5])
    >>> clf.feature_shape, clf.output_stride
    ((128, 6, 6), 8)
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from histoseg.errors import ConfigError
from histoseg.models.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize
from histoseg.models.weights import load_encoder_weights

__all__ = [
    "EncoderPatchClassifier",
    "PlainPatchClassifier",
    "TimmTrunk",
    "build_classifier",
    "plain_feature_size",
]


def plain_feature_size(patch_size: int, num_blocks: int) -> int:
    """Side of the final feature map of :class:`PlainPatchClassifier`.

    Each block is a 3x3 'valid' conv (side - 2) then a 2x2 max-pool with floor (side // 2).

    Args:
        patch_size: Input patch side P in pixels.
        num_blocks: Number of conv blocks (``len(widths)``).

    Returns:
        The side of the final feature map, or 0 when some block would get an empty map.
    """
    side = int(patch_size)
    for _ in range(num_blocks):
        side -= 2
        if side < 2:
            return 0
        side //= 2
    return side


def _min_plain_patch(num_blocks: int) -> int:
    side = 1
    for _ in range(num_blocks):
        side = 2 * side + 2
    return side


class PlainPatchClassifier(nn.Sequential):
    """Plain CNN patch classifier; exact under convolutionalization.

    Layers (names in the state dict): ``normalize`` (:class:`Normalize`, ImageNet statistics
    for 3 channels, mean 0.5 / std 0.25 otherwise), then for each width ``k`` (1-based)
    ``conv{k}`` (3x3, padding 0), ``bn{k}``, ``relu{k}``, ``pool{k}`` (2x2 max-pool, stride 2,
    floor mode); then ``flatten``, for each dense width ``fc{k}``, ``fc_relu{k}``,
    ``fc_drop{k}``; and ``logits`` (Linear to ``num_classes``).

    No layer pads, so the convolutionalized network is exact: its score at a pixel is the
    classifier applied to the patch there (docs/methods.md section 3). Output stride
    ``2 ** len(widths)``. With the defaults (P = 64) the final map is 128 x 6 x 6; the layers
    see a 62 x 62 px receptive field (the floor of the second pool drops one row/column),
    i.e. 31-62 um of tissue at 0.5-1 mpp, enough context for tubules and most glomeruli.

    Args:
        num_classes: Number of output classes C.
        patch_size: Input patch side P in pixels (the classifier accepts exactly P x P).
        in_channels: Image channels.
        widths: Output channels of the conv blocks.
        dense: Widths of the hidden dense layers (may be empty).
        dropout: Dropout probability after each hidden dense layer, in [0, 1).

    Raises:
        ConfigError: If ``patch_size`` is too small for the number of blocks, or another
            argument is out of range.

    Shapes:
        Input float32 ``(N, in_channels, P, P)`` in [0, 1]; output logits ``(N, C)``.

    Attributes:
        patch_size: P.
        output_stride: Product of the pooling strides, ``2 ** len(widths)``.
        feature_shape: ``(widths[-1], s, s)``, the map that is flattened.
    """

    def __init__(
        self,
        num_classes: int = 5,
        patch_size: int = 64,
        in_channels: int = 3,
        widths: tuple[int, ...] = (32, 64, 128),
        dense: tuple[int, ...] = (256,),
        dropout: float = 0.3,
    ) -> None:
        widths = tuple(int(w) for w in widths)
        dense = tuple(int(d) for d in dense)
        if num_classes < 1:
            raise ConfigError(f"PlainPatchClassifier: num_classes must be >= 1, got {num_classes}")
        if in_channels < 1:
            raise ConfigError(f"PlainPatchClassifier: in_channels must be >= 1, got {in_channels}")
        if not widths or min(widths) < 1 or (dense and min(dense) < 1):
            raise ConfigError(
                f"PlainPatchClassifier: widths {widths} must be non-empty and widths/dense {dense} positive"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"PlainPatchClassifier: dropout must be in [0, 1), got {dropout}")
        side = plain_feature_size(patch_size, len(widths))
        if side < 1:
            raise ConfigError(
                f"PlainPatchClassifier: patch_size={patch_size} leaves no feature map after {len(widths)} "
                "blocks "
                f"(3x3 valid conv + 2x2 max-pool each); use patch_size >= {_min_plain_patch(len(widths))} "
                "or fewer widths"
            )
        mean: tuple[float, ...]
        std: tuple[float, ...]
        if in_channels == 3:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        else:
            mean, std = (0.5,) * in_channels, (0.25,) * in_channels
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["normalize"] = Normalize(mean, std)
        prev = in_channels
        for k, width in enumerate(widths, start=1):
            layers[f"conv{k}"] = nn.Conv2d(prev, width, kernel_size=3, padding=0)
            layers[f"bn{k}"] = nn.BatchNorm2d(width)
            layers[f"relu{k}"] = nn.ReLU(inplace=True)
            layers[f"pool{k}"] = nn.MaxPool2d(2)
            prev = width
        layers["flatten"] = nn.Flatten()
        prev = widths[-1] * side * side
        for k, width in enumerate(dense, start=1):
            layers[f"fc{k}"] = nn.Linear(prev, width)
            layers[f"fc_relu{k}"] = nn.ReLU(inplace=True)
            layers[f"fc_drop{k}"] = nn.Dropout(dropout)
            prev = width
        layers["logits"] = nn.Linear(prev, num_classes)
        super().__init__(layers)
        self.patch_size: int = int(patch_size)
        self.num_classes: int = int(num_classes)
        self.output_stride: int = 2 ** len(widths)
        self.feature_shape: tuple[int, int, int] = (widths[-1], side, side)


class TimmTrunk(nn.Module):
    """A timm model's ``forward_features``: image ``(N, 3, H, W)`` -> map ``(N, C, h, w)``.

    Args:
        model: A timm model (created with ``num_classes=0, global_pool=''``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """Return the final feature map (no pooling)."""
        out: Tensor = self.model.forward_features(x)  # type: ignore[operator]
        return out


class EncoderPatchClassifier(nn.Module):
    """A timm encoder trunk plus a dense head on the flattened final feature map.

    ``features`` = ``Sequential(normalize, encoder)`` maps ``(N, 3, H, W)`` in [0, 1] to the
    encoder's last feature map ``(N, C_f, h, w)`` at stride ``output_stride`` (32 for
    ResNets); ``head`` = ``Sequential(Flatten, [Linear, ReLU, Dropout]*, Linear)``. No global
    pooling, so :func:`histoseg.models.convolutionalize.convolutionalize` can turn the head into convolutions
    (the first Linear becomes an ``h x w`` conv).

    Exactness (honest caveat): timm trunks zero-pad their convolutions and pooling, so the
    convolutionalized network applied to a large image is *not* the patch classifier applied
    at each position: a patch sees zeros at its own borders, the large image sees the
    neighbouring tissue. Only the pass on an input of exactly ``patch_size`` is exact, and
    :func:`histoseg.models.dense.dense_predict` supports ``"upsample"`` and ``"shift_and_stitch"``
    (``output_stride ** 2`` passes) but not ``"atrous"`` for it. Prefer
    :class:`PlainPatchClassifier` when exact dense maps matter.

    Args:
        encoder: timm model name (e.g. ``"resnet18"``).
        num_classes: Number of output classes C.
        patch_size: Input patch side P in pixels.
        weights: None for random initialisation, or the path of a local state-dict file of
            the timm model (keys of its classifier, e.g. ``fc.*``, are ignored; read by
            :func:`histoseg.models.weights.load_encoder_weights`). Nothing is ever downloaded.
        dense: Widths of the hidden dense layers of the head.
        dropout: Dropout after each hidden dense layer, in [0, 1).

    Raises:
        ConfigError: Unknown encoder, a patch too small for the encoder, or a missing,
            unreadable or mismatching weights file.

    Shapes:
        Input float32 ``(N, 3, P, P)`` in [0, 1]; output logits ``(N, C)``.
    """

    def __init__(
        self,
        encoder: str = "resnet18",
        num_classes: int = 5,
        patch_size: int = 64,
        weights: str | None = None,
        dense: tuple[int, ...] = (256,),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        import timm  # local import: timm is slow to import and only needed here

        if num_classes < 1:
            raise ConfigError(f"EncoderPatchClassifier: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"EncoderPatchClassifier: dropout must be in [0, 1), got {dropout}")
        try:
            model = timm.create_model(encoder, pretrained=False, num_classes=0, global_pool="")
        except Exception as exc:  # noqa: BLE001 - timm raises RuntimeError/ValueError/... for bad names
            raise ConfigError(
                f"EncoderPatchClassifier: unknown timm encoder {encoder!r} ({type(exc).__name__}); use a "
                "name from timm.list_models()"
            ) from None
        if weights is not None:
            load_encoder_weights(model, weights)
        self.features = nn.Sequential(OrderedDict(normalize=Normalize(), encoder=TimmTrunk(model)))
        self.output_stride: int = int(model.feature_info[-1]["reduction"])  # type: ignore[index]
        if patch_size < self.output_stride:
            raise ConfigError(
                f"EncoderPatchClassifier: patch_size={patch_size} is smaller than the stride "
                f"{self.output_stride} of encoder {encoder!r}; use patch_size >= {self.output_stride}"
            )
        was_training = self.features.training
        self.features.eval()
        try:
            with torch.no_grad():
                fmap = self.features(torch.zeros(1, 3, patch_size, patch_size))
        except Exception:  # noqa: BLE001 - too-small inputs raise inside timm/torch
            raise ConfigError(
                f"EncoderPatchClassifier: patch_size={patch_size} is too small for encoder {encoder!r}; use "
                f"patch_size >= {self.output_stride}"
            ) from None
        finally:
            self.features.train(was_training)
        if fmap.dim() != 4 or fmap.shape[-1] < 1 or fmap.shape[-2] < 1:
            raise ConfigError(
                f"EncoderPatchClassifier: encoder {encoder!r} gives no spatial feature map at "
                f"patch_size={patch_size}; use a CNN encoder"
            )
        self.feature_shape: tuple[int, int, int] = (
            int(fmap.shape[1]),
            int(fmap.shape[2]),
            int(fmap.shape[3]),
        )
        head: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        prev = fmap[0].numel()
        for k, width in enumerate(dense, start=1):
            head[f"fc{k}"] = nn.Linear(prev, int(width))
            head[f"fc_relu{k}"] = nn.ReLU(inplace=True)
            head[f"fc_drop{k}"] = nn.Dropout(dropout)
            prev = int(width)
        head["logits"] = nn.Linear(prev, num_classes)
        self.head = nn.Sequential(head)
        self.encoder_name: str = encoder
        self.patch_size: int = int(patch_size)
        self.num_classes: int = int(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Classify patches ``(N, 3, P, P)`` in [0, 1] -> logits ``(N, C)``."""
        out: Tensor = self.head(self.features(x))
        return out


def build_classifier(arch: str = "plain", **kwargs: Any) -> nn.Module:
    """Build a patch classifier from a configuration dict (as stored in checkpoints).

    Args:
        arch: ``"plain"`` (:class:`PlainPatchClassifier`) or ``"encoder"``
            (:class:`EncoderPatchClassifier`).
        **kwargs: Keyword arguments of that class (lists are accepted for tuples). Store
            ``weights=None`` in checkpoints: the state dict carries the weights.

    Returns:
        The classifier (train mode, as any new module).

    Raises:
        ConfigError: Unknown ``arch`` or unknown keyword (named in the message).

    Example:
        >>> build_classifier("plain", num_classes=3, patch_size=32, widths=[8, 16]).feature_shape
        (16, 6, 6)
    """
    classes: dict[str, type[nn.Module]] = {"plain": PlainPatchClassifier, "encoder": EncoderPatchClassifier}
    if arch not in classes:
        raise ConfigError(f"classifier arch {arch!r} is unknown; use one of {', '.join(classes)}")
    cls = classes[arch]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"classifier arch {arch!r} got unknown option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    for key in ("widths", "dense"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    return cls(**kwargs)
