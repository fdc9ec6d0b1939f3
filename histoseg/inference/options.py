"""The settings of slide inference, in one frozen object validated once.

:class:`InferenceOptions` holds every knob of :func:`histoseg.inference.predict.predict_slide`
(tile geometry, merging, batch size, glass skipping, device, precision, memory format, test-time
augmentation, reader workers). It is built by the ``quantify`` parser (:func:`add_arguments` /
:func:`from_arguments`, each option declared once) or by hand, and taken by ``predict_slide``,
:class:`histoseg.quantify.Cohort` / :func:`histoseg.quantify.run_quantify` and
:class:`histoseg.writers.SlideWriter`.

Validation happens in two places of this module and nowhere else:

- ``__post_init__``: everything that does not depend on the model (types, ranges, NaN, device
  names and availability, precision names); a bad value raises a one-line
  :class:`~histoseg.errors.ConfigError` naming the option and the fix;
- :meth:`InferenceOptions.resolve`: the model-dependent part, once per run: ``tile_size=None`` and
  ``margin=None`` become the predictor's, ``blend="auto"`` becomes the predictor's default, the
  tile is checked against the model's size multiple and a memory bound.

Zero means zero: no value is ever replaced by a default; ``None`` (or ``"auto"``) is the only way
to ask for one.

Example:
    >>> from histoseg.inference.options import InferenceOptions
    >>> InferenceOptions(overlap=0.25, batch_size=8).overlap
    0.25
    >>> InferenceOptions(overlap=1.0)
    Traceback (most recent call last):
    ...
    histoseg.errors.ConfigError: overlap=1.0: must be in [0, 1) (0.5 = half a tile); e.g. --overlap 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from histoseg.errors import ConfigError
from histoseg.inference.predictor import Predictor

__all__ = ["MAX_TILE_SIZE", "PRECISIONS", "InferenceOptions", "add_arguments", "from_arguments"]

Blend = Literal["auto", "gaussian", "crop"]
Precision = Literal["auto", "32", "bf16", "16"]
PRECISIONS: tuple[str, ...] = ("auto", "32", "bf16", "16")
MAX_TILE_SIZE = 8192
"""Largest tile side accepted (pixels); beyond it a batch of logits alone needs gigabytes."""
MAX_BATCH_BYTES = 8 * 2**30
"""Largest float32 batch of images + logits accepted (bytes): ``batch x (3 + C) x tile^2 x 4``."""


def _number(name: str, value: Any, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ConfigError(f"{name}={value!r}: must be {'a number' if kind is float else 'an integer'}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{name}={value}: must be a finite number")


def check_device(name: str) -> torch.device:
    """``torch.device(name)``, or a one-line error for an unknown or unavailable device."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device={name!r}: unknown torch device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device={name!r}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device={name!r}: only {count} CUDA device(s); use cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device={name!r}: MPS is not available on this machine; use --device cpu")
    elif device.type != "cpu":
        raise ConfigError(f"device={name!r}: unsupported device type; use cpu, cuda, cuda:N or mps")
    return device


@dataclass(frozen=True)
class InferenceOptions:
    """How a slide is tiled, run through the model and merged (frozen; validated on creation).

    Attributes:
        tile_size: Tile side in pixels at the model's resolution (label-map pixels); None = the
            predictor's (``Predictor.tile_size``). Must be a multiple of the model's
            ``size_multiple`` and at most :data:`MAX_TILE_SIZE`.
        overlap: Fraction of a tile shared with its neighbour in Gaussian mode, in [0, 1)
            (0 = tiles side by side, 0.5 = nnU-Net).
        blend: ``"gaussian"`` (Gaussian-weighted logits, sigma = tile / 8), ``"crop"`` (each
            pixel from one tile's centre) or ``"auto"`` (the predictor's default: crop for patch
            classifiers, Gaussian for segmentation networks).
        margin: Pixels discarded at each tile edge in crop mode, 0 <= margin < tile / 2; None =
            the predictor's (``Predictor.margin``).
        batch_size: Tiles per forward pass (>= 1).
        skip_glass: Run only tiles that touch tissue on the thumbnail tissue mask.
        device: Torch device of the model and of the merge (``cpu``, ``cuda``, ``cuda:N``, ``mps``).
        precision: ``"32"`` (float32), ``"bf16"`` (bfloat16 autocast), ``"16"`` (float16 autocast)
            or ``"auto"`` (see :mod:`histoseg.inference.forward`: bf16 + channels-last on a CPU
            with AMX, fp32 + channels-last on other CPUs, bf16 (fp16 without bf16 support) +
            channels-last on CUDA, each kept only when it agrees with fp32 on the first tiles).
        channels_last: Channels-last memory format for the model and its input; None = what
            ``auto`` tries, and for an explicit precision on whenever it is bf16 or 16, off for 32.
        tta: Test-time augmentation: average the softmax over the 8 rotations/mirrors of each
            tile (8 forward passes per tile) and record the per-view spread.
        workers: Processes reading and decoding tiles ahead of the model (0 = one background
            thread in this process).
    """

    tile_size: int | None = None
    overlap: float = 0.5
    blend: Blend = "auto"
    margin: int | None = None
    batch_size: int = 4
    skip_glass: bool = True
    device: str = "cpu"
    precision: Precision = "auto"
    channels_last: bool | None = None
    tta: bool = False
    workers: int = 0

    def __post_init__(self) -> None:
        if self.tile_size is not None:
            _number("tile_size", self.tile_size, int)
            if not 0 < self.tile_size <= MAX_TILE_SIZE:
                raise ConfigError(
                    f"tile_size={self.tile_size}: must be between 1 and {MAX_TILE_SIZE} pixels; e.g. 512"
                )
        _number("overlap", self.overlap, float)
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(
                f"overlap={self.overlap}: must be in [0, 1) (0.5 = half a tile); e.g. --overlap 0.5"
            )
        if self.blend not in ("auto", "gaussian", "crop"):
            raise ConfigError(f"blend={self.blend!r}: use auto, gaussian or crop")
        if self.margin is not None:
            _number("margin", self.margin, int)
            if self.margin < 0:
                raise ConfigError(f"margin={self.margin}: must be >= 0 pixels")
        _number("batch_size", self.batch_size, int)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: must be at least 1 tile per forward pass")
        _number("workers", self.workers, int)
        if self.workers < 0:
            raise ConfigError(f"workers={self.workers}: must be >= 0 (0 = read in a background thread)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}: use one of {', '.join(PRECISIONS)}")
        for name in ("skip_glass", "tta"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be true or false")
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise ConfigError(f"channels_last={self.channels_last!r}: must be true, false or null (auto)")
        check_device(self.device)

    @property
    def torch_device(self) -> torch.device:
        """The device as a :class:`torch.device`."""
        return torch.device(self.device)

    @property
    def resolved(self) -> bool:
        """True when tile size, margin and blend are concrete (after :meth:`resolve`)."""
        return self.tile_size is not None and self.margin is not None and self.blend != "auto"

    def replace(self, **changes: Any) -> InferenceOptions:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def resolve(self, predictor: Predictor) -> InferenceOptions:
        """Fill in the predictor's defaults and check the model-dependent constraints.

        Returns:
            A copy with concrete ``tile_size``, ``margin`` and ``blend`` (``precision`` stays as
            given; ``"auto"`` is decided on the first tiles by the predictor loop).

        Raises:
            ConfigError: tile not a multiple of the model's size multiple, margin too large for
                crop mode, a batch too large for memory, or a predictor without usable classes/mpp.
        """
        tile = int(predictor.tile_size if self.tile_size is None else self.tile_size)
        margin = int(predictor.margin if self.margin is None else self.margin)
        blend: Blend = predictor.default_blend if self.blend == "auto" else self.blend
        multiple = max(1, int(predictor.size_multiple))
        fixed = predictor.input_size
        if fixed is not None and tile != fixed:
            raise ConfigError(
                f"tile_size={tile}: this model takes tiles of exactly {fixed} pixels (the fixed input size of its "
                f"vision transformer); drop --tile_size or give {fixed}"
            )
        if tile <= 0 or tile % multiple:
            lower = max(multiple, tile // multiple * multiple)
            raise ConfigError(
                f"tile_size={tile}: must be a positive multiple of {multiple} for this model; e.g. {lower}"
            )
        if blend == "crop" and not margin < tile / 2:
            raise ConfigError(f"margin={margin}: must be less than half the tile ({tile}) in crop mode")
        classes = len(predictor.classes)
        if not 0 < classes <= 255:
            raise ConfigError(f"the model has {classes} classes; label maps hold 1 to 255 classes")
        if not (predictor.mpp > 0 and math.isfinite(predictor.mpp)):
            raise ConfigError(
                f"predictor mpp={predictor.mpp}: must be a positive number of microns per pixel"
            )
        batch_bytes = self.batch_size * (3 + classes) * tile * tile * 4
        if batch_bytes > MAX_BATCH_BYTES:
            raise ConfigError(
                f"tile_size={tile}, batch_size={self.batch_size}: one batch would need "
                f"{batch_bytes / 2**30:.1f} GiB; lower --tile_size or --batch_size"
            )
        return dataclasses.replace(self, tile_size=tile, margin=margin, blend=blend)

    def settings(self) -> dict[str, Any]:
        """The options as a JSON-able dict (for report settings and the resume key)."""
        return dataclasses.asdict(self)


_HELP = {
    "tile_size": "inference tile side in pixels at the model's resolution (default: the model's)",
    "overlap": "tile overlap fraction in [0, 1) for Gaussian blending",
    "blend": "how tiles are merged: Gaussian-weighted logits (U-Nets) or centre crops (patch "
    "classifiers, exact); auto picks by model",
    "margin": "crop mode: pixels discarded at each tile edge (default: the model's)",
    "batch_size": "tiles per forward pass",
    "device": "torch device (cpu, cuda, cuda:1, mps)",
    "precision": "network precision: 32 (fp32), bf16, 16 (fp16) or auto (bf16 + channels-last on a CPU "
    "with AMX, fp32 + channels-last on other CPUs, bf16/fp16 on CUDA; kept when it agrees with fp32 "
    "on the first tiles)",
    "tta": "test-time augmentation: average the softmax over the 8 rotations/mirrors of each tile "
    "(8x the compute) and report the interstitial fraction's spread over the views",
    "workers": "processes reading tiles ahead of the model (0 = a background thread)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare every :class:`InferenceOptions` field on an argparse parser (``--tile_size`` ...)."""
    defaults = InferenceOptions()
    parser.add_argument("--tile_size", type=int, default=None, help=_HELP["tile_size"])
    parser.add_argument("--overlap", type=float, default=defaults.overlap, help=_HELP["overlap"])
    parser.add_argument(
        "--blend", choices=("auto", "gaussian", "crop"), default=defaults.blend, help=_HELP["blend"]
    )
    parser.add_argument("--margin", type=int, default=None, help=_HELP["margin"])
    parser.add_argument("--batch_size", type=int, default=defaults.batch_size, help=_HELP["batch_size"])
    parser.add_argument("--device", default=defaults.device, help=_HELP["device"])
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=defaults.precision, help=_HELP["precision"]
    )
    parser.add_argument(
        "--no_skip_glass", action="store_true", help="run every tile, also those on glass only"
    )
    parser.add_argument("--tta", action="store_true", help=_HELP["tta"])
    parser.add_argument("--workers", type=int, default=defaults.workers, help=_HELP["workers"])


def from_arguments(parsed: argparse.Namespace) -> InferenceOptions:
    """The :class:`InferenceOptions` of arguments declared by :func:`add_arguments`.

    Raises:
        ConfigError: an invalid value, named with its ``--option``.
    """
    try:
        return InferenceOptions(
            tile_size=parsed.tile_size,
            overlap=parsed.overlap,
            blend=parsed.blend,
            margin=parsed.margin,
            batch_size=parsed.batch_size,
            skip_glass=not parsed.no_skip_glass,
            device=parsed.device,
            precision=parsed.precision,
            tta=parsed.tta,
            workers=parsed.workers,
        )
    except ConfigError as exc:
        raise ConfigError(f"--{exc}") from None
