"""Filter rarefaction (a trous): rewrite an FCN so one pass gives its stride-1 map.

:func:`atrous_network` gives every subsampling layer of an FCN from
:func:`histoseg.models.convolutionalize.convolutionalize` stride 1 and dilates every later
filter / pooling window by the accumulated stride (Li, Zhao, Wang, "Highly efficient forward
and backward propagation of convolutional neural networks for pixelwise classification",
arXiv:1412.4526, 2014). For a network without padding, one pass equals the ``f**2``
shift-and-stitch passes of :func:`histoseg.models.dense.dense_predict` interleaved, with fewer
multiply-adds; ``dense_predict(method="atrous")`` runs it.

Example:
    >>> import torch
    >>> from histoseg.models.classifiers import PlainPatchClassifier
    >>> from histoseg.models.convolutionalize import convolutionalize
    >>> fcn = convolutionalize(PlainPatchClassifier(patch_size=16, widths=(4, 8), dense=(8,)), 16)
    >>> net = atrous_network(fcn)
    >>> fcn.output_stride, net.output_stride, tuple(net(torch.rand(1, 3, 20, 21)).shape)
    (4, 1, (1, 5, 7, 8))
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import Tensor, nn

from histoseg.models.convolutionalize import _POINTWISE, _expand, _has_padding, _pair, _square_stride

__all__ = ["atrous_network"]


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
