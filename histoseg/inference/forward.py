"""Running the network on tiles: precision, memory format, test-time augmentation.

:class:`TileRunner` turns a batch of (N, T, T, 3) uint8 tiles into (N, C, T, T) float32 scores on
the model's device, at the precision of :class:`~histoseg.inference.options.InferenceOptions`:

- ``"32"``: float32; ``"bf16"`` / ``"16"``: ``torch.autocast`` to bfloat16 / float16 (the
  scores are cast back to float32 before merging);
- ``"auto"``: a candidate precision and memory format are chosen from the hardware
  (:func:`candidate`): on a CPU with AMX (:func:`cpu_has_amx`,
  ``torch.cpu._is_amx_tile_supported()``) bf16 + channels-last; on any other CPU fp32 +
  channels-last (AVX512-BF16 without AMX computes bf16 no faster than fp32: measured below); on
  CUDA bf16 + channels-last, or fp16 where the GPU has no bf16; on MPS and other devices plain
  fp32, unchecked. The candidate is then checked **once**, on the first batch of tissue tiles,
  against fp32 in the default memory format: it is kept only when the argmax labels agree on at
  least :data:`AGREEMENT_MIN` of the pixels and no class's share of the pixels differs by more
  than :data:`AREA_DIFF_MAX`; otherwise fp32 is used and one line is logged. The decision is
  kept for the rest of the run (:attr:`TileRunner.precision`, :attr:`TileRunner.channels_last`).
- ``channels_last=None`` means the format of the candidate under ``auto``, and channels-last
  exactly when the precision is not fp32 for an explicit precision (so ``"32"`` is the
  reference: fp32, default memory format).

Measured on 2-core Xeons (``benchmarks/bench_precision_tta.py``; docs/performance.md): with AMX,
bf16 + channels-last ran the kidney U-Net 4.9x faster than fp32 end to end; on an AVX512-BF16 CPU
without AMX, per batch of 8 tiles, efficientnet-lite0 U-Net fp32 0.46-0.52 s, fp32 + channels-last
0.32-0.34 s, bf16 + channels-last 0.31-0.35 s; resnet18 U-Net 0.65-0.73, 0.44-0.55 and 0.63-0.66 s.

With ``tta=True`` every tile is run in the 8 dihedral views (:func:`histoseg.transforms.dihedral`:
``k`` quarter turns then an optional mirror; view index ``2 k + flip``, view 0 = the tile as
read); each view's logits are turned back (:func:`~histoseg.transforms.undo_dihedral`), the scores
are the mean of the 8 softmax probabilities, and the argmax label of every view is returned too
(uint8, for the per-view spread of the report).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from histoseg.errors import HistosegError
from histoseg.transforms import dihedral, undo_dihedral

__all__ = ["AGREEMENT_MIN", "AREA_DIFF_MAX", "PrecisionCheck", "TileRunner", "candidate", "cpu_has_amx"]

AGREEMENT_MIN = 0.99
"""Least fraction of pixels whose argmax must agree with fp32 for ``auto`` to keep bf16/fp16."""
AREA_DIFF_MAX = 0.005
"""Largest difference (0.5 percentage points) of any class's pixel share against fp32 for ``auto``."""
VIEWS = [(k, flip) for k in range(4) for flip in (False, True)]
"""The 8 dihedral views, index ``2 k + flip``."""

_AUTOCAST = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
log = logging.getLogger("histoseg")


def cpu_has_amx() -> bool:
    """True when the CPU has AMX tiles (Sapphire Rapids and newer Xeons), where bf16 autocast pays.

    AVX512-BF16 alone is not enough: on such a CPU without AMX, bf16 autocast ran the shipped
    networks no faster than fp32 with channels-last, for inference and for training (module
    docstring; docs/performance.md).
    """
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def candidate(device: torch.device) -> tuple[str, bool]:
    """``(precision, channels_last)`` that ``precision="auto"`` tries on ``device`` before its check.

    ``("32", False)``, the reference itself, means no check is needed.
    """
    if device.type == "cpu":
        return ("bf16", True) if cpu_has_amx() else ("32", True)
    if device.type == "cuda":
        return ("bf16" if torch.cuda.is_bf16_supported() else "16"), True
    return "32", False


@dataclass(frozen=True)
class PrecisionCheck:
    """The once-per-run comparison of the ``auto`` candidate with fp32 on the first tiles.

    Attributes:
        candidate: Precision tried (``bf16``, ``16``, or ``32`` in another memory format).
        channels_last: Whether the candidate ran channels-last.
        tiles: Tiles compared.
        agreement: Fraction of pixels with the same argmax label as fp32.
        area_diff: Largest absolute difference of a class's pixel share (fraction, not percent).
        kept: Whether the candidate passed (:data:`AGREEMENT_MIN`, :data:`AREA_DIFF_MAX`).
    """

    candidate: str
    channels_last: bool
    tiles: int
    agreement: float
    area_diff: float
    kept: bool

    def as_dict(self) -> dict[str, object]:
        """JSON-able form for the report."""
        return {
            "candidate": self.candidate,
            "channels_last": self.channels_last,
            "tiles": self.tiles,
            "agreement": self.agreement,
            "area_diff": self.area_diff,
            "kept": self.kept,
            "agreement_min": AGREEMENT_MIN,
            "area_diff_max": AREA_DIFF_MAX,
        }


def compare_labels(reference: torch.Tensor, other: torch.Tensor, num_classes: int) -> tuple[float, float]:
    """``(pixel agreement, largest class-share difference)`` of two (N, T, T) label tensors."""
    agreement = float((reference == other).float().mean())
    size = reference.numel()
    a = torch.bincount(reference.reshape(-1), minlength=num_classes).double() / size
    b = torch.bincount(other.reshape(-1), minlength=num_classes).double() / size
    return agreement, float((a - b).abs().max())


class TileRunner:
    """Runs the model on tile batches at the chosen precision, optionally with 8-view TTA.

    Args:
        model: ``(N, 3, T, T)`` float images in [0, 1] -> ``(N, C, T, T)`` logits; moved to ``device``.
        num_classes: C (checked against the model's output).
        device: Model device.
        precision: ``auto``, ``32``, ``bf16`` or ``16``.
        channels_last: Memory format; None = channels-last when the precision used is not fp32.
        tta: Average the softmax over the 8 dihedral views.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        num_classes: int,
        device: torch.device,
        precision: str = "32",
        channels_last: bool | None = None,
        tta: bool = False,
    ) -> None:
        self.model = model.eval().to(device)
        self.num_classes = num_classes
        self.device = device
        self.tta = tta
        self.check: PrecisionCheck | None = None
        self._input: torch.Tensor | None = None  # the float input buffer, reused (:meth:`_images`)
        self._channels_last_option = channels_last
        self._channels_last = False
        self.precision = precision
        self._candidate = self._reference()  # what auto tries (set below); unused otherwise
        if precision == "auto":
            tried, tried_layout = candidate(device)
            self._candidate = (tried, tried_layout if channels_last is None else channels_last)
            if self._candidate == self._reference():
                self.precision = "32"
        if self.precision != "auto":
            self._set_format(self.precision)

    @property
    def channels_last(self) -> bool:
        """Memory format in use."""
        return self._channels_last

    def _reference(self) -> tuple[str, bool]:
        """fp32 in the configured memory format (default format when unset): what ``auto`` checks against."""
        return "32", bool(self._channels_last_option)

    def _set_format(self, precision: str, channels_last: bool | None = None) -> None:
        option = self._channels_last_option if channels_last is None else channels_last
        self._channels_last = precision != "32" if option is None else option
        fmt = torch.channels_last if self._channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt)

    def _logits(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        layout = torch.channels_last if self._channels_last else torch.contiguous_format
        if not x.is_contiguous(memory_format=layout):
            x = x.contiguous(memory_format=layout)
        dtype = _AUTOCAST[precision]
        with torch.autocast(device_type=self.device.type, dtype=dtype, enabled=dtype is not None):
            logits = self.model(x)
        if not isinstance(logits, torch.Tensor):
            raise HistosegError(f"the model returned {type(logits).__name__}; it must return a logits tensor")
        if logits.shape != (x.shape[0], self.num_classes, *x.shape[-2:]):
            raise HistosegError(
                f"the model returned logits of shape {tuple(logits.shape)} for tiles of shape "
                f"{tuple(x.shape)}; expected {(x.shape[0], self.num_classes, *x.shape[-2:])} "
                "(one channel per class, same height and width)"
            )
        # float32 in the contiguous (C, T, T) layout the mergers read: a channels-last network's
        # logits would otherwise reach the merge strided, which makes its blending 3x slower; the
        # transpose rides along with the dtype copy (no copy at all for contiguous fp32 logits).
        return logits.to(torch.float32, memory_format=torch.contiguous_format)

    def _decide(self, x: torch.Tensor) -> torch.Tensor:
        """Resolve ``auto`` on this batch; returns its logits at the precision decided."""
        precision, channels_last = self._candidate
        reference_format = self._reference()[1]
        self._set_format("32", reference_format)
        reference = self._logits(x, "32")
        self._set_format(precision, channels_last)
        trial = self._logits(x, precision)
        agreement, area_diff = compare_labels(reference.argmax(1), trial.argmax(1), self.num_classes)
        kept = agreement >= AGREEMENT_MIN and area_diff <= AREA_DIFF_MAX
        self.check = PrecisionCheck(precision, channels_last, int(x.shape[0]), agreement, area_diff, kept)
        if kept:
            self.precision = precision
            return trial
        name = ("fp32" if precision == "32" else precision) + (" + channels-last" if channels_last else "")
        log.info(
            "precision auto: %s disagrees with fp32 on the first %d tiles (pixel agreement %.4f, "
            "largest class-area difference %.2f pp; need >= %.2f and <= %.2f pp); using fp32",
            name,
            x.shape[0],
            agreement,
            100 * area_diff,
            AGREEMENT_MIN,
            100 * AREA_DIFF_MAX,
        )
        self.precision = "32"
        self._set_format("32", reference_format)
        return reference

    def _images(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, 3, T, T) float32 in [0, 1] on the device from (N, T, T, 3) uint8, in one copy."""
        tensor = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
        nhwc = tensor.to(self.device, non_blocking=True).permute(0, 3, 1, 2)  # a view with NHWC strides
        # One uint8 -> float copy straight into the layout the model runs in (3x faster than two
        # copies), into one buffer kept for every batch of the same shape: a fresh 6 MB buffer per
        # batch of 8 tiles of 256 px would be new memory each time, and the first touch of new
        # pages (page faults) made the copy 2-3x slower on CPU. The scores of a batch are merged
        # before the next batch is converted (and on CUDA the copy is ordered after the forward
        # that read the buffer on the same stream), so nothing reads the buffer after it is reused.
        layout = torch.channels_last if self._channels_last else torch.contiguous_format
        x = self._input
        if x is None or x.shape != nhwc.shape or not x.is_contiguous(memory_format=layout):
            x = self._input = torch.empty(
                nhwc.shape, dtype=torch.float32, device=self.device, memory_format=layout
            )
        return x.copy_(nhwc).div_(255.0)

    def __call__(self, images: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of (N, T, T, 3) uint8 tiles (NumPy, or torch in pinned memory for CUDA).

        Returns:
            ``(scores, view_labels)``: (N, C, T, T) float32 logits (or, with TTA, mean
            probabilities) on the device, contiguous, and with TTA the (N, 8, T, T) uint8 argmax
            of every view (None without TTA).
        """
        with torch.inference_mode():
            x = self._images(images)
            if not self.tta:
                if self.precision == "auto":
                    return self._decide(x), None
                return self._logits(x, self.precision), None
            if self.precision == "auto":
                self._decide(x)
            probs = torch.zeros(0)
            labels = []
            for k, flip in VIEWS:
                view = undo_dihedral(self._logits(dihedral(x, k, flip), self.precision), k, flip)
                labels.append(view.argmax(1).to(torch.uint8))
                p = torch.softmax(view, dim=1)
                probs = p if not probs.numel() else probs + p
            return probs / len(VIEWS), torch.stack(labels, dim=1)
