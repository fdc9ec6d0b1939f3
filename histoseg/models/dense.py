"""Exact dense prediction: one score vector per pixel from a convolutionalized classifier.

This module turns an FCN from :func:`histoseg.models.convolutionalize.convolutionalize`
(stride ``f = output_stride``) into per-pixel maps (docs/methods.md section 3):

- :func:`dense_predict`: one score vector per *pixel*, three ways: ``"upsample"`` (one FCN
  pass, bilinear upsampling: a baseline, not exact), ``"shift_and_stitch"`` (the ``f**2``
  shifted passes interleaved; Long et al. 2015) and ``"atrous"`` (one pass of the network
  rewritten by :func:`histoseg.models.atrous.atrous_network`: every subsampling layer gets
  stride 1 and every later filter / pooling window is dilated by the accumulated stride --
  filter rarefaction, Li, Zhao, Wang, arXiv:1412.4526, 2014). For networks without padding
  the last two are exact.
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

Exactness conditions: BatchNorm in eval mode (:func:`dense_predict` runs the network in eval
mode), no padding inside the network (``exact`` attribute of the FCN), no global pooling,
max/avg pooling in floor mode.

Example:
    >>> import torch
    >>> from histoseg.models.classifiers import PlainPatchClassifier
    >>> from histoseg.models.convolutionalize import convolutionalize
    >>> from histoseg.models.dense import dense_predict
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
from histoseg.models.atrous import atrous_network
from histoseg.models.convolutionalize import _pair, convolutionalize

__all__ = [
    "PAD_MODES",
    "DensePredictor",
    "count_macs",
    "dense_predict",
]

Method = Literal["upsample", "shift_and_stitch", "atrous"]
METHODS: tuple[str, ...] = ("upsample", "shift_and_stitch", "atrous")
PAD_MODES: tuple[str, ...] = ("reflect", "replicate", "constant", "circular")
"""Padding modes accepted by :func:`dense_predict` (``torch.nn.functional.pad`` modes)."""

_DEFAULT_BUDGET_BYTES = 256 * 2**20


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


def _check_dense_args(fcn: nn.Module, image: Tensor, p: int, method: str, pad_mode: str) -> int:
    """Validate the :func:`dense_predict` arguments; return the FCN's output stride f."""
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
    fcn_patch = getattr(fcn, "patch_size", None)
    if fcn_patch is not None and int(fcn_patch) != p:
        raise ConfigError(
            f"dense_predict: patch_size={p} but the FCN was built for patch_size={fcn_patch}; pass "
            f"{fcn_patch}"
        )
    f = getattr(fcn, "output_stride", None)
    if not isinstance(f, int) or f < 1:
        raise TypeError(
            "dense_predict: fcn has no integer output_stride; build it with "
            "histoseg.models.convolutionalize.convolutionalize"
        )
    height, width = image.shape[-2:]
    before, after = p // 2, p - 1 - p // 2
    if pad_mode == "reflect" and min(height, width) <= max(before, after):
        raise ConfigError(
            f"dense_predict: a {height}x{width} image is too small for pad_mode='reflect' with "
            f"patch_size={p} "
            f"(needs sides > {max(before, after)} px); use larger tiles or pad_mode='replicate'"
        )
    return f


def _dense_upsample(
    fcn: nn.Module, padded: Tensor, p: int, f: int, height: int, width: int, rows: int | None, budget: int
) -> Tensor:
    """``"upsample"``: one (row-chunked if exact) FCN pass, then bilinear upsampling by f."""
    padded = F.pad(padded, (0, f, 0, f), mode="replicate")
    if bool(getattr(fcn, "exact", False)):  # heat rows k need padded rows [k f, k f + P): chunks start at k f
        rows = rows or _auto_rows(fcn, padded.shape[0], width + p - 1 + f, 0, f, budget)
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
    up = F.interpolate(heat, size=((hy - 1) * f + 1, (hx - 1) * f + 1), mode="bilinear", align_corners=True)
    return up[..., :height, :width].contiguous()


def _dense_shift_and_stitch(
    fcn: nn.Module, padded: Tensor, p: int, f: int, height: int, width: int, rows: int | None, budget: int
) -> Tensor:
    """``"shift_and_stitch"``: the f*f shifted passes, in row chunks if the FCN is exact."""
    if not bool(getattr(fcn, "exact", False)):
        return _shift_and_stitch(fcn, padded, height, width, f, None)
    rows = rows or _auto_rows(fcn, padded.shape[0], width + p - 1, 0, f, budget)
    out: Tensor | None = None
    for r0, r1 in _row_chunks(height, rows):
        part = _shift_and_stitch(fcn, padded[..., r0 : r1 + p - 1, :], r1 - r0, width, f, None)
        if out is None:
            out = part.new_empty(part.shape[0], part.shape[1], height, width)
        out[..., r0:r1, :] = part
    assert out is not None
    return out


def _dense_atrous(
    fcn: nn.Module, padded: Tensor, p: int, height: int, width: int, rows: int | None, budget: int
) -> Tensor:
    """``"atrous"``: one pass of :func:`atrous_network`, in row chunks if the FCN is exact."""
    net = atrous_network(fcn)
    net.eval()
    if not bool(getattr(fcn, "exact", False)):
        return net(padded)[..., :height, :width].contiguous()
    rows = rows or _auto_rows(net, padded.shape[0], width + p - 1, p - 1, 1, budget)
    out: Tensor | None = None
    for r0, r1 in _row_chunks(height, rows):
        part = net(padded[..., r0 : r1 + p - 1, :])
        if part.shape[-2] < r1 - r0 or part.shape[-1] < width:
            raise RuntimeError(f"atrous: network output {tuple(part.shape)} smaller than {r1 - r0}x{width}")
        if out is None:
            out = part.new_empty(part.shape[0], part.shape[1], height, width)
        out[..., r0:r1, :] = part[..., : r1 - r0, :width]
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
    p = int(patch_size)
    f = _check_dense_args(fcn, image, p, method, pad_mode)
    height, width = image.shape[-2:]
    with torch.no_grad(), _eval_mode(fcn):
        padded = _pad(image, p // 2, p - 1 - p // 2, pad_mode)
        if method == "upsample":
            return _dense_upsample(fcn, padded, p, f, height, width, chunk_rows, memory_budget)
        if method == "shift_and_stitch":
            return _dense_shift_and_stitch(fcn, padded, p, f, height, width, chunk_rows, memory_budget)
        return _dense_atrous(fcn, padded, p, height, width, chunk_rows, memory_budget)


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
