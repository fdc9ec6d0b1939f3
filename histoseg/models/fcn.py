"""Convolutionalized patch classifiers and exact dense prediction.

This module owns the classifier -> dense-map route of docs/methods.md section 3:

- :func:`convolutionalize`: a patch classifier (conv trunk, ``Flatten``, dense layers)
  becomes a fully convolutional network (FCN) with the same weights: the first ``Linear``
  after the ``C x h x w`` feature map becomes an ``h x w`` convolution, later ``Linear``
  layers become 1 x 1 convolutions (Long, Shelhamer, Darrell, "Fully Convolutional Networks
  for Semantic Segmentation", CVPR 2015). On an image it outputs one score vector per patch
  position, at stride ``f = output_stride`` (product of the strides).
- :func:`dense_predict`: one score vector per *pixel*, three ways: ``"upsample"`` (one FCN
  pass, bilinear upsampling: a baseline, not exact), ``"shift_and_stitch"`` (the ``f**2``
  shifted passes interleaved; Long et al. 2015) and ``"atrous"`` (one pass of the network
  rewritten by :func:`atrous_network`: every subsampling layer gets stride 1 and every later
  filter / pooling window is dilated by the accumulated stride -- filter rarefaction, Li,
  Zhao, Wang, "Highly efficient forward and backward propagation of convolutional neural
  networks for pixelwise classification", arXiv:1412.4526, 2014). For networks without
  padding the last two are exact.
- :func:`count_macs`: multiply-adds of ``Conv2d``/``Linear`` layers, for benchmarks.
- :class:`DensePredictor`: an ``nn.Module`` (N, 3, H, W) -> (N, C, H, W) wrapping the above,
  so slide inference can treat it like a segmentation model.

Pixel convention (holds exactly for exact networks): with ``P = patch_size`` the image is
padded by ``P // 2`` pixels before and ``P - 1 - P // 2`` after, on both axes, in
``pad_mode`` (``"reflect"`` by default: mirror without repeating the edge pixel, as
``numpy.pad(mode="reflect")``; also ``"replicate"``, ``"constant"`` = zeros, ``"circular"``).
``out[..., i, j]`` is the classifier applied to the P x P patch whose top-left corner is
``(i - P // 2, j - P // 2)`` in image coordinates, i.e. ``padded[..., i:i+P, j:j+P]``. Pixel
``(i, j)`` is thus at index ``(P // 2, P // 2)`` of its patch: the centre for odd P, the
lower-right of the four central pixels for even P.

Exactness conditions: BatchNorm in eval mode (the returned FCN is in eval mode and
:func:`dense_predict` runs it in eval mode), no padding inside the network (``exact``
attribute of the FCN), no global pooling, max/avg pooling in floor mode.

Example:
    >>> import torch
    >>> from histoseg.models.classifiers import PlainPatchClassifier
    >>> from histoseg.models.fcn import convolutionalize, dense_predict
    >>> clf = PlainPatchClassifier(num_classes=5, patch_size=32, widths=(8, 16), dense=(16,)).eval()
    >>> fcn = convolutionalize(clf, patch_size=32)
    >>> fcn.output_stride, fcn.exact
    (4, True)
    >>> dense_predict(fcn, torch.rand(1, 3, 40, 50), patch_size=32).shape
    torch.Size([1, 5, 40, 50])
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from histoseg.errors import ConfigError
from histoseg.models.normalize import Normalize

__all__ = [
    "PAD_MODES",
    "DensePredictor",
    "atrous_network",
    "convolutionalize",
    "count_macs",
    "dense_predict",
]

Method = Literal["upsample", "shift_and_stitch", "atrous"]
METHODS: tuple[str, ...] = ("upsample", "shift_and_stitch", "atrous")
PAD_MODES: tuple[str, ...] = ("reflect", "replicate", "constant", "circular")
"""Padding modes accepted by :func:`dense_predict` (``torch.nn.functional.pad`` modes)."""

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

_DEFAULT_BUDGET_BYTES = 256 * 2**20


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

    flat = next((i for i, m in enumerate(layers) if isinstance(m, nn.Flatten)), len(layers))
    trunk, head = layers[:flat], layers[flat + 1 :]
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
    if flat < len(layers):
        fl = layers[flat]
        if fl.start_dim != 1 or fl.end_dim != -1:  # type: ignore[union-attr]
            raise TypeError(f"{fl!r}: only Flatten(start_dim=1, end_dim=-1) is supported")

    new_trunk = [copy.deepcopy(m) for m in trunk]
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
    fcn = nn.Sequential(*new_trunk, *new_head).eval()
    fcn.output_stride = int(stride)  # type: ignore[assignment]
    fcn.patch_size = patch_size  # type: ignore[assignment]
    fcn.exact = bool(exact and opaque is None)  # type: ignore[assignment]
    fcn.feature_shape = (channels, fh, fw)  # type: ignore[assignment]
    return fcn


class _DilatedAvgPool2d(nn.Module):
    """Average pooling with stride 1 over a dilated window (exact a-trous AvgPool2d).

    ``out[..., i, j] = sum_{a<kh, b<kw} x[..., i + a*d, j + b*d] / divisor`` (padding 0).
    """

    def __init__(self, kernel_size: tuple[int, int], dilation: int, divisor: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = int(dilation)
        self.divisor = int(divisor)

    def forward(self, x: Tensor) -> Tensor:
        """Pool (N, C, H, W) -> (N, C, H - (kh-1)d, W - (kw-1)d)."""
        kh, kw = self.kernel_size
        d = self.dilation
        ho, wo = x.shape[-2] - (kh - 1) * d, x.shape[-1] - (kw - 1) * d
        if ho < 1 or wo < 1:
            raise RuntimeError(f"_DilatedAvgPool2d: input {tuple(x.shape)} smaller than the dilated window")
        out = x[..., 0:ho, 0:wo].clone()
        for a in range(kh):
            for b in range(kw):
                if a or b:
                    out += x[..., a * d : a * d + ho, b * d : b * d + wo]
        return out / self.divisor

    def extra_repr(self) -> str:
        """Show the window in ``print(model)``."""
        return f"kernel_size={self.kernel_size}, stride=1, dilation={self.dilation}, divisor={self.divisor}"


def _scaled_padding(pad: int | str | Sequence[int], d: int) -> int | str | tuple[int, int]:
    if isinstance(pad, str):
        return pad
    p = _pair(pad)  # type: ignore[arg-type]
    return (p[0] * d, p[1] * d)


def atrous_network(fcn: nn.Module) -> nn.Sequential:
    """Rewrite an FCN so that one pass yields the full-resolution (stride 1) map.

    Walking the layers in order with the accumulated stride ``d`` (initially 1): a
    ``Conv2d`` or ``MaxPool2d`` gets stride 1, its dilation multiplied by ``d`` and its
    padding multiplied by ``d``; an ``AvgPool2d`` becomes a stride-1 dilated average (exact:
    a sum of ``kh * kw`` shifted slices divided by the divisor); then ``d`` is multiplied by
    the layer's original stride. Pointwise layers are kept. Filter rarefaction of Li, Zhao,
    Wang (arXiv:1412.4526): ``f'_ij = f_{i/d, j/d}`` when ``d`` divides i and j, else 0.
    Convolution parameters are *shared* with ``fcn`` (not copied), so the result follows
    later weight updates; the rewritten network is in the same train/eval mode as ``fcn``.

    For an FCN without padding, ``atrous_network(fcn)(x)[..., i, j]`` equals the FCN output
    for the patch with top-left corner ``(i, j)`` of ``x``, for every i, j: exactly the
    interleaved ``f**2`` shift-and-stitch map. With zero-padded layers the interior agrees
    and the borders differ.

    Args:
        fcn: An ``nn.Sequential`` (e.g. from :func:`convolutionalize`) of Conv2d,
            BatchNorm2d, activations, MaxPool2d, AvgPool2d (padding 0), Dropout, Normalize.

    Returns:
        An ``nn.Sequential`` with ``output_stride = 1`` and the ``patch_size`` of ``fcn``.

    Raises:
        TypeError: A layer that cannot be rewritten (named in the message), e.g. an opaque
            timm trunk: use ``method="shift_and_stitch"`` or ``"upsample"`` for those.
    """
    if not isinstance(fcn, nn.Sequential):
        raise TypeError(f"atrous_network: expected an nn.Sequential FCN, got {type(fcn).__name__}")
    d = 1
    new: list[nn.Module] = []
    for layer in _expand(fcn):
        if isinstance(layer, nn.Conv2d):
            s = _square_stride(layer)
            dil = _pair(layer.dilation)  # type: ignore[arg-type]
            conv = nn.Conv2d(
                layer.in_channels,
                layer.out_channels,
                kernel_size=layer.kernel_size,  # type: ignore[arg-type]
                stride=1,
                padding=_scaled_padding(layer.padding, d),  # type: ignore[arg-type]
                dilation=(dil[0] * d, dil[1] * d),
                groups=layer.groups,
                bias=layer.bias is not None,
                padding_mode=layer.padding_mode,
                device="meta",
            )
            conv.weight = layer.weight
            conv.bias = layer.bias
            new.append(conv)
            d *= s
        elif isinstance(layer, nn.MaxPool2d):
            s = _square_stride(layer)
            if layer.ceil_mode or layer.return_indices:
                raise TypeError(f"atrous_network: {layer!r} with ceil_mode/return_indices is not supported")
            dil = _pair(layer.dilation)  # type: ignore[arg-type]
            new.append(
                nn.MaxPool2d(
                    layer.kernel_size,
                    stride=1,
                    padding=_scaled_padding(layer.padding, d),  # type: ignore[arg-type]
                    dilation=(dil[0] * d, dil[1] * d),
                )
            )
            d *= s
        elif isinstance(layer, nn.AvgPool2d):
            s = _square_stride(layer)
            if _has_padding(layer) or layer.ceil_mode:
                raise TypeError(f"atrous_network: {layer!r} needs padding=0 and ceil_mode=False")
            k = _pair(layer.kernel_size)  # type: ignore[arg-type]
            if s == 1 and d == 1:
                new.append(copy.deepcopy(layer))
            else:
                divisor = layer.divisor_override or k[0] * k[1]
                new.append(_DilatedAvgPool2d(k, d, int(divisor)))
            d *= s
        elif isinstance(layer, (nn.BatchNorm2d, *_POINTWISE)):
            new.append(layer)
        else:
            raise TypeError(
                f"atrous_network: cannot rewrite layer {type(layer).__name__} (opaque or unsupported); "
                "use dense_predict(method='shift_and_stitch') or method='upsample' for this network"
            )
    net = nn.Sequential(*new)
    net.train(fcn.training)
    net.output_stride = 1  # type: ignore[assignment]
    net.patch_size = getattr(fcn, "patch_size", None)  # type: ignore[assignment]
    return net


def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Count the multiply-adds of the ``Conv2d`` and ``Linear`` layers of one forward pass.

    The module is copied to the ``meta`` device (no memory, no compute) and run on an input
    of ``input_shape`` with forward hooks. A convolution costs
    ``out.numel() * in_channels / groups * kh * kw``, a linear layer
    ``out.numel() * in_features`` (the batch size is included). Pooling, normalisation and
    activations (additions/comparisons only) are not counted.

    Args:
        module: Any module whose forward takes one tensor.
        input_shape: Shape of that tensor, e.g. ``(1, 3, 1024, 1024)``.

    Returns:
        The number of multiply-adds (int).
    """
    meta = copy.deepcopy(module).to("meta")
    total = 0

    def hook(m: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            kh, kw = _pair(m.kernel_size)  # type: ignore[arg-type]
            total += out.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            meta(torch.empty(*[int(s) for s in input_shape], device="meta"))
    finally:
        for h in handles:
            h.remove()
    return int(total)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


def _pad(image: Tensor, before: int, after: int, mode: str) -> Tensor:
    pads = (before, after, before, after)
    if mode == "constant":
        return F.pad(image, pads, mode="constant", value=0.0)
    return F.pad(image, pads, mode=mode)


def _max_channels(net: nn.Module, default: int) -> int:
    chans = [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)]
    return max(chans + [default])


def _auto_rows(net: nn.Module, n: int, width: int, halo: int, f: int, budget: int) -> int:
    per_row = n * width * _max_channels(net, 3) * 4
    rows = budget // max(per_row, 1) - halo
    return max(f, (rows // f) * f)


def _row_chunks(height: int, rows: int) -> Iterator[tuple[int, int]]:
    for r0 in range(0, height, rows):
        yield r0, min(height, r0 + rows)


def _shift_and_stitch(
    fcn: nn.Module, padded: Tensor, height: int, width: int, f: int, out: Tensor | None
) -> Tensor:
    """Fill the (N, C, height, width) map from f*f shifted passes on an already padded image."""
    for dy in range(f):
        ny = len(range(dy, height, f))
        for dx in range(f):
            nx = len(range(dx, width, f))
            if ny == 0 or nx == 0:
                continue
            o = fcn(padded[..., dy:, dx:])
            if o.shape[-2] < ny or o.shape[-1] < nx:
                raise RuntimeError(
                    f"shift_and_stitch: FCN output {tuple(o.shape)} smaller than the {ny}x{nx} grid"
                )
            if out is None:
                out = o.new_empty(o.shape[0], o.shape[1], height, width)
            out[..., dy::f, dx::f] = o[..., :ny, :nx]
    assert out is not None
    return out


def dense_predict(
    fcn: nn.Module,
    image: Tensor,
    patch_size: int,
    method: Method = "atrous",
    pad_mode: str = "reflect",
    *,
    chunk_rows: int | None = None,
    memory_budget: int = _DEFAULT_BUDGET_BYTES,
) -> Tensor:
    """Score every pixel of ``image`` with a convolutionalized patch classifier.

    Convention (exact for ``fcn.exact`` networks with ``"atrous"`` and
    ``"shift_and_stitch"``): pad ``image`` by ``P // 2`` before and ``P - 1 - P // 2`` after
    on both axes in ``pad_mode``; ``out[..., i, j]`` = classifier(``padded[..., i:i+P, j:j+P]``),
    i.e. the patch with top-left corner ``(i - P // 2, j - P // 2)`` of the image.

    Methods:
        ``"upsample"``: one FCN pass on the padded image (plus ``f`` replicated rows/columns
        at the end), then bilinear interpolation of the stride-f heatmap placing sample k at
        pixel ``k * f`` (``align_corners=True``). Exact on the pixels with ``i % f == 0`` and
        ``j % f == 0``; a baseline elsewhere.
        ``"shift_and_stitch"``: ``f**2`` FCN passes on the padded image shifted by
        ``(dy, dx)``, ``0 <= dy, dx < f``, interleaved into ``out[..., dy::f, dx::f]``
        (Long et al. 2015).
        ``"atrous"``: one pass of :func:`atrous_network` (Li et al. 2014); same result as
        shift-and-stitch, fewer multiply-adds.

    For exact networks, the image is processed in row chunks (each chunk reads its
    ``P - 1`` halo rows) so that the largest activation stays near ``memory_budget`` bytes;
    results do not depend on the chunking. Non-exact (padded or opaque) networks run in one
    pass. The network runs in eval mode under ``torch.no_grad`` (its mode is restored).

    Args:
        fcn: Output of :func:`convolutionalize` (needs ``output_stride``).
        image: Float images (N, C_in, H, W), values in [0, 1], on the device of ``fcn``.
        patch_size: Patch side P the classifier was trained with (must equal ``fcn.patch_size``).
        method: ``"atrous"`` (default), ``"shift_and_stitch"`` or ``"upsample"``.
        pad_mode: ``"reflect"`` (default), ``"replicate"``, ``"constant"`` (zeros) or ``"circular"``.
        chunk_rows: Output rows per chunk (None: from ``memory_budget``).
        memory_budget: Approximate bytes of the largest activation per chunk.

    Returns:
        Logits (N, C, H, W), dtype of the network's output.

    Raises:
        ConfigError: Unknown method/pad_mode, wrong patch_size, image too small to reflect.
        ValueError: ``image`` is not a float (N, C, H, W) tensor.
        TypeError: ``"atrous"`` on a network :func:`atrous_network` cannot rewrite.
    """
    if method not in METHODS:
        raise ConfigError(f"dense_predict: unknown method {method!r}; use one of {', '.join(METHODS)}")
    if pad_mode not in PAD_MODES:
        raise ConfigError(f"dense_predict: unknown pad_mode {pad_mode!r}; use one of {', '.join(PAD_MODES)}")
    if not isinstance(image, Tensor) or image.dim() != 4 or not image.is_floating_point():
        desc = (
            f"{image.dtype} tensor of shape {tuple(image.shape)}"
            if isinstance(image, Tensor)
            else type(image).__name__
        )
        raise ValueError(f"dense_predict: expected a float (N, C, H, W) image in [0, 1], got a {desc}")
    p = int(patch_size)
    fcn_patch = getattr(fcn, "patch_size", None)
    if fcn_patch is not None and int(fcn_patch) != p:
        raise ConfigError(
            f"dense_predict: patch_size={p} but the FCN was built for patch_size={fcn_patch}; pass "
            f"{fcn_patch}"
        )
    f = getattr(fcn, "output_stride", None)
    if not isinstance(f, int) or f < 1:
        raise TypeError(
            "dense_predict: fcn has no integer output_stride; build it with histoseg.models.fcn.convolutionalize"
        )
    n, _, height, width = image.shape
    before, after = p // 2, p - 1 - p // 2
    if pad_mode == "reflect" and min(height, width) <= max(before, after):
        raise ConfigError(
            f"dense_predict: a {height}x{width} image is too small for pad_mode='reflect' with "
            f"patch_size={p} "
            f"(needs sides > {max(before, after)} px); use larger tiles or pad_mode='replicate'"
        )
    exact = bool(getattr(fcn, "exact", False))
    with torch.no_grad(), _eval_mode(fcn):
        padded = _pad(image, before, after, pad_mode)
        if method == "upsample":
            padded = F.pad(padded, (0, f, 0, f), mode="replicate")
            if exact:  # heat rows k need padded rows [k f, k f + P): chunks start at multiples of f
                rows = chunk_rows or _auto_rows(fcn, n, width + p - 1 + f, 0, f, memory_budget)
                rows = max(f, rows // f * f)
                total = padded.shape[-2]
                parts = []
                for r0 in range(0, total - p + 1, rows):
                    last = r0 + rows > total - p
                    part = fcn(padded[..., r0 : total if last else r0 + rows - f + p, :])
                    parts.append(part if last else part[..., : rows // f, :])
                heat = torch.cat(parts, dim=-2)
            else:
                heat = fcn(padded)
            hy, hx = heat.shape[-2:]
            up = F.interpolate(
                heat, size=((hy - 1) * f + 1, (hx - 1) * f + 1), mode="bilinear", align_corners=True
            )
            return up[..., :height, :width].contiguous()
        if method == "shift_and_stitch":
            if not exact:
                return _shift_and_stitch(fcn, padded, height, width, f, None)
            rows = chunk_rows or _auto_rows(fcn, n, width + p - 1, 0, f, memory_budget)
            out: Tensor | None = None
            for r0, r1 in _row_chunks(height, rows):
                part = _shift_and_stitch(fcn, padded[..., r0 : r1 + p - 1, :], r1 - r0, width, f, None)
                if out is None:
                    out = part.new_empty(part.shape[0], part.shape[1], height, width)
                out[..., r0:r1, :] = part
            assert out is not None
            return out
        net = atrous_network(fcn)
        net.eval()
        if not exact:
            return net(padded)[..., :height, :width].contiguous()
        rows = chunk_rows or _auto_rows(net, n, width + p - 1, p - 1, 1, memory_budget)
        out = None
        for r0, r1 in _row_chunks(height, rows):
            part = net(padded[..., r0 : r1 + p - 1, :])
            if part.shape[-2] < r1 - r0 or part.shape[-1] < width:
                raise RuntimeError(
                    f"atrous: network output {tuple(part.shape)} smaller than {r1 - r0}x{width}"
                )
            if out is None:
                out = part.new_empty(part.shape[0], part.shape[1], height, width)
            out[..., r0:r1, :] = part[..., : r1 - r0, :width]
        assert out is not None
        return out


class DensePredictor(nn.Module):
    """Segmentation-model view of a convolutionalized classifier: (N, 3, H, W) -> (N, C, H, W).

    ``forward`` is :func:`dense_predict` with fixed settings, so slide inference can run it
    like a U-Net (any H, W; ``size_multiple`` 1). Tile-edge pixels within ``margin`` =
    ``P // 2`` px of a tile border see padded (reflected) context, so crop or down-weight that
    margin when stitching tiles.

    Args:
        fcn: Output of :func:`convolutionalize`, or a patch classifier (any module containing
            a ``Flatten`` or ``Linear`` layer), which is convolutionalized here (a copy: later
            changes to the classifier are not seen).
        patch_size: Patch side P (defaults to ``fcn.patch_size``).
        method: See :func:`dense_predict`.
        pad_mode: See :func:`dense_predict`.
        chunk_rows: See :func:`dense_predict`.

    Raises:
        ConfigError: Unknown method or missing patch size.
        TypeError: ``method="atrous"`` for a network :func:`atrous_network` cannot rewrite
            (e.g. :class:`~histoseg.models.classifiers.EncoderPatchClassifier`: use ``"upsample"``).

    Example:
        >>> import torch
        >>> from histoseg.models.classifiers import PlainPatchClassifier
        >>> clf = PlainPatchClassifier(patch_size=24, widths=(4, 8), dense=(8,))
        >>> model = DensePredictor(convolutionalize(clf, 24))
        >>> model(torch.rand(1, 3, 30, 30)).shape
        torch.Size([1, 5, 30, 30])
    """

    def __init__(
        self,
        fcn: nn.Module,
        patch_size: int | None = None,
        method: Method = "atrous",
        pad_mode: str = "reflect",
        chunk_rows: int | None = None,
    ) -> None:
        super().__init__()
        size = patch_size if patch_size is not None else getattr(fcn, "patch_size", None)
        if size is None:
            raise ConfigError("DensePredictor: pass patch_size (the FCN has no patch_size attribute)")
        if method not in METHODS:
            raise ConfigError(f"DensePredictor: unknown method {method!r}; use one of {', '.join(METHODS)}")
        if any(isinstance(m, (nn.Flatten, nn.Linear)) for m in fcn.modules()):
            fcn = convolutionalize(fcn, int(size))
        if method == "atrous":
            atrous_network(fcn)  # fail now, not at the first tile, if it cannot be rewritten
        self.fcn = fcn
        self.patch_size = int(size)
        self.method: Method = method
        self.pad_mode = pad_mode
        self.chunk_rows = chunk_rows
        self.margin = self.patch_size // 2

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, C, H, W) for images (N, C_in, H, W) in [0, 1]."""
        return dense_predict(
            self.fcn, x, self.patch_size, self.method, self.pad_mode, chunk_rows=self.chunk_rows
        )
