"""Convolutionalization: a patch classifier's dense head rewritten as convolutions.

:func:`convolutionalize` turns a patch classifier (conv trunk, ``Flatten``, dense layers) into
a fully convolutional network (FCN) with the same weights: the first ``Linear`` after the
``C x h x w`` feature map becomes an ``h x w`` convolution, later ``Linear`` layers become
1 x 1 convolutions (Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015). On an image it outputs one score vector per patch position, at
stride ``f = output_stride`` (product of the strides). Per-pixel maps from such an FCN
(shift-and-stitch, atrous) are in :mod:`histoseg.models.dense`.

This module also holds the layer checks both modules share: which layers are supported,
their (square) strides and padding.

Exactness conditions: BatchNorm in eval mode (the returned FCN is in eval mode), no padding
inside the network (``exact`` attribute of the FCN), no global pooling, max/avg pooling in
floor mode.

Example:
    >>> import torch
    >>> from histoseg.models.classifiers import PlainPatchClassifier
    >>> clf = PlainPatchClassifier(num_classes=5, patch_size=32, widths=(8, 16), dense=(16,)).eval()
    >>> fcn = convolutionalize(clf, patch_size=32)
    >>> fcn.output_stride, fcn.exact, fcn.feature_shape
    (4, True, (16, 6, 6))
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from histoseg.errors import ConfigError
from histoseg.models.normalize import Normalize

__all__ = ["convolutionalize"]

_POINTWISE: tuple[type[nn.Module], ...] = (
    Normalize,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.ELU,
    nn.Hardswish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
)
"""Layers acting on each position independently (any shape (N, C, ...)): kept as they are."""

_SUPPORTED = (
    "Conv2d, BatchNorm2d, ReLU-like activations, MaxPool2d, AvgPool2d, Dropout, Flatten, Linear, Normalize"
)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = tuple(v)
    return (int(a), int(b))


def _square_stride(layer: nn.Module) -> int:
    stride = _pair(layer.stride)  # type: ignore[arg-type]
    if stride[0] != stride[1]:
        raise TypeError(f"{layer!r}: non-square strides {stride} are not supported by convolutionalize")
    return stride[0]


def _has_padding(layer: nn.Module) -> bool:
    pad = layer.padding
    if isinstance(pad, str):
        return pad != "valid"
    return any(int(p) != 0 for p in _pair(pad))  # type: ignore[arg-type]


def _expand(module: nn.Module) -> list[nn.Module]:
    """Flatten nested ``nn.Sequential`` containers into a list of layers."""
    if isinstance(module, nn.Sequential):
        out: list[nn.Module] = []
        for child in module:
            out.extend(_expand(child))
        return out
    return [module]


def _check_trunk_layer(layer: nn.Module) -> tuple[int, bool]:
    """Validate a layer before ``Flatten``; return (stride, exact)."""
    if isinstance(layer, nn.Conv2d):
        return _square_stride(layer), not _has_padding(layer)
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        if layer.ceil_mode:
            raise TypeError(
                f"{layer!r}: ceil_mode=True pools partial windows at patch borders; use ceil_mode=False"
            )
        if isinstance(layer, nn.MaxPool2d) and layer.return_indices:
            raise TypeError(f"{layer!r}: return_indices=True is not supported")
        return _square_stride(layer), not _has_padding(layer)
    if isinstance(layer, nn.BatchNorm2d):
        if not layer.track_running_stats or layer.running_mean is None:
            raise TypeError(
                f"{layer!r}: BatchNorm without running statistics cannot be convolutionalized exactly"
            )
        return 1, True
    if isinstance(layer, _POINTWISE):
        return 1, True
    if isinstance(layer, nn.Linear):
        raise TypeError(
            f"convolutionalize: {layer!r} before Flatten acts on the width axis; put Flatten before the "
            "first Linear"
        )
    raise TypeError(
        f"convolutionalize: unsupported layer {layer!r} ({type(layer).__name__}); supported: {_SUPPORTED}"
    )


def _bn1d_as_2d(bn: nn.BatchNorm1d) -> nn.BatchNorm2d:
    if not bn.track_running_stats or bn.running_mean is None:
        raise TypeError(f"{bn!r}: BatchNorm without running statistics cannot be convolutionalized exactly")
    new = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine)
    new.load_state_dict(bn.state_dict())
    return new


def _linear_as_conv(linear: nn.Linear, kernel: tuple[int, int], channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, linear.out_features, kernel_size=kernel, bias=linear.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.detach().reshape(linear.out_features, channels, kernel[0], kernel[1]))
        if linear.bias is not None and conv.bias is not None:
            conv.bias.copy_(linear.bias.detach())
    return conv.to(device=linear.weight.device, dtype=linear.weight.dtype)


def _input_channels(trunk: list[nn.Module], head: list[nn.Module], patch_size: int) -> int:
    for layer in trunk:
        if isinstance(layer, nn.Conv2d):
            return int(layer.in_channels)
        if isinstance(layer, Normalize):
            return int(layer.mean.numel())
        if isinstance(layer, nn.BatchNorm2d):
            return int(layer.num_features)
    for layer in head:
        if isinstance(layer, nn.Linear) and layer.in_features % (patch_size * patch_size) == 0:
            return layer.in_features // (patch_size * patch_size)
    return 3


def _reference_tensor(modules: list[nn.Module]) -> Tensor | None:
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            if t.is_floating_point():
                return t
    return None


def _classifier_layers(classifier: nn.Module) -> tuple[list[nn.Module], nn.Module | None]:
    """Flatten the classifier into layers; return (layers, opaque trunk or None)."""
    opaque: nn.Module | None = None
    if isinstance(classifier, nn.Sequential):
        layers = _expand(classifier)
    elif isinstance(getattr(classifier, "features", None), nn.Module) and isinstance(
        getattr(classifier, "head", None), nn.Sequential
    ):
        features: nn.Module = classifier.features  # type: ignore[assignment]
        try:
            trunk_layers = _expand(features)
            for layer in trunk_layers:
                _check_trunk_layer(layer)
        except TypeError:
            opaque = features
            trunk_layers = [features]
        layers = trunk_layers + _expand(classifier.head)  # type: ignore[arg-type]
    else:
        raise TypeError(
            f"convolutionalize: unsupported classifier {type(classifier).__name__}; pass an nn.Sequential of "
            f"{_SUPPORTED}, or a module with .features and .head (nn.Sequential)"
        )
    return layers, opaque


def _trunk_stride(
    trunk: list[nn.Module], opaque: nn.Module | None, classifier: nn.Module
) -> tuple[int, bool]:
    """Validate the trunk layers; return (output stride, exact)."""
    stride, exact = 1, True
    for layer in trunk:
        if layer is opaque:
            out_stride = getattr(classifier, "output_stride", None)
            if not isinstance(out_stride, int) or out_stride < 1:
                raise TypeError(
                    f"convolutionalize: opaque trunk {type(layer).__name__} needs classifier.output_stride "
                    "(int)"
                )
            stride, exact = stride * out_stride, False
            continue
        s, ex = _check_trunk_layer(layer)
        stride, exact = stride * s, exact and ex
    return stride, exact


def _probe_feature_map(
    new_trunk: list[nn.Module], trunk: list[nn.Module], head: list[nn.Module], patch_size: int
) -> tuple[tuple[int, int, int], torch.device, torch.dtype]:
    """Run the copied trunk on one zero patch; return ((C, h, w), device, dtype) of the model."""
    probe = nn.Sequential(*new_trunk).eval()
    ref = _reference_tensor(new_trunk)
    if ref is None:
        ref = _reference_tensor(head)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None else torch.float32
    c_in = _input_channels(trunk, head, patch_size)
    with torch.no_grad():
        try:
            fmap = probe(torch.zeros(1, c_in, patch_size, patch_size, device=device, dtype=dtype))
        except RuntimeError as exc:
            raise ConfigError(
                f"convolutionalize: the trunk cannot process a {patch_size}x{patch_size} patch "
                f"({str(exc).splitlines()[0][:120]}); check patch_size"
            ) from None
    if fmap.dim() != 4:
        raise TypeError(
            f"convolutionalize: the trunk returns shape {tuple(fmap.shape)}, expected (N, C, h, w)"
        )
    channels, fh, fw = (int(v) for v in fmap.shape[1:])
    return (channels, fh, fw), device, dtype


def _convolutional_head(
    head: list[nn.Module],
    feature_shape: tuple[int, int, int],
    patch_size: int,
    device: torch.device,
    dtype: torch.dtype,
) -> list[nn.Module]:
    """Rewrite the layers after ``Flatten``: Linear -> Conv2d, BatchNorm1d -> BatchNorm2d."""
    channels, fh, fw = feature_shape
    new_head: list[nn.Module] = []
    first_linear = True
    for layer in head:
        if isinstance(layer, nn.Linear):
            if first_linear:
                if layer.in_features != channels * fh * fw:
                    raise ConfigError(
                        f"convolutionalize: {layer!r} expects {layer.in_features} inputs but the trunk gives "
                        f"{channels}x{fh}x{fw}={channels * fh * fw} at patch_size={patch_size}; pass the "
                        "classifier's patch_size"
                    )
                new_head.append(_linear_as_conv(layer, (fh, fw), channels))
                first_linear = False
            else:
                new_head.append(_linear_as_conv(layer, (1, 1), layer.in_features))
        elif isinstance(layer, nn.BatchNorm1d):
            new_head.append(_bn1d_as_2d(layer).to(device=device, dtype=dtype))
        elif isinstance(layer, _POINTWISE):
            new_head.append(copy.deepcopy(layer))
        else:
            raise TypeError(
                f"convolutionalize: unsupported layer {layer!r} ({type(layer).__name__}) after Flatten; "
                "supported: Linear, BatchNorm1d, activations, Dropout"
            )
    return new_head


def convolutionalize(classifier: nn.Module, patch_size: int) -> nn.Sequential:
    """Turn a patch classifier into a fully convolutional network with the same weights.

    Accepts an ``nn.Sequential`` (nested ones are flattened) of ``Conv2d``, ``BatchNorm2d``,
    ReLU-like activations (ReLU, ReLU6, LeakyReLU, PReLU, GELU, SiLU, Mish, ELU, Hardswish,
    Sigmoid, Tanh, Identity), ``MaxPool2d``, ``AvgPool2d``, ``Dropout``, ``Flatten``,
    ``Linear`` (and ``BatchNorm1d`` after ``Flatten``, :class:`histoseg.models.normalize.Normalize`),
    such as :class:`~histoseg.models.classifiers.PlainPatchClassifier`; or a module with ``features``
    (the conv trunk, any module working on any input size) and ``head`` (an ``nn.Sequential``
    starting with ``Flatten``) such as :class:`~histoseg.models.classifiers.EncoderPatchClassifier`.
    A ``features`` trunk made only of supported layers is converted like a Sequential;
    otherwise it is kept as one opaque layer whose stride is ``classifier.output_stride``.

    The first ``Linear`` after ``Flatten`` becomes a ``Conv2d`` whose kernel is the
    ``h x w`` feature map the trunk produces at ``patch_size`` (weights reshaped from
    ``(out, C*h*w)`` to ``(out, C, h, w)``, the row-major order of ``Flatten``); later
    ``Linear`` layers become 1 x 1 convolutions; ``Flatten`` is removed; ``BatchNorm1d``
    becomes ``BatchNorm2d``. All layers are copies: the classifier is not modified and later
    changes to it do not affect the FCN.

    Args:
        classifier: The patch classifier, mapping (N, C_in, P, P) to logits (N, C).
        patch_size: The patch side P the classifier was built for.

    Returns:
        An ``nn.Sequential`` in eval mode mapping (N, C_in, H, W) with H, W >= P to logits
        (N, C, h', w'); ``out[..., k, l]`` scores the patch with top-left corner
        ``(k * f, l * f)``. Attributes: ``output_stride`` (int, f = product of the strides),
        ``patch_size`` (int), ``exact`` (bool: True if no layer pads and the trunk was
        converted layer by layer, so dense prediction equals patch classification),
        ``feature_shape`` ((C, h, w) at ``patch_size``).

    Raises:
        TypeError: A layer that cannot be convolutionalized (named in the message).
        ConfigError: ``patch_size`` does not match the classifier's first dense layer.
    """
    patch_size = int(patch_size)
    if patch_size < 1:
        raise ConfigError(f"convolutionalize: patch_size must be >= 1, got {patch_size}")
    layers, opaque = _classifier_layers(classifier)
    flat = next((i for i, m in enumerate(layers) if isinstance(m, nn.Flatten)), len(layers))
    trunk, head = layers[:flat], layers[flat + 1 :]
    stride, exact = _trunk_stride(trunk, opaque, classifier)
    if flat < len(layers):
        fl = layers[flat]
        if fl.start_dim != 1 or fl.end_dim != -1:  # type: ignore[union-attr]
            raise TypeError(f"{fl!r}: only Flatten(start_dim=1, end_dim=-1) is supported")

    new_trunk = [copy.deepcopy(m) for m in trunk]
    feature_shape, device, dtype = _probe_feature_map(new_trunk, trunk, head, patch_size)
    new_head = _convolutional_head(head, feature_shape, patch_size, device, dtype)
    fcn = nn.Sequential(*new_trunk, *new_head).eval()
    fcn.output_stride = int(stride)  # type: ignore[assignment]
    fcn.patch_size = patch_size  # type: ignore[assignment]
    fcn.exact = bool(exact and opaque is None)  # type: ignore[assignment]
    fcn.feature_shape = feature_shape  # type: ignore[assignment]
    return fcn
