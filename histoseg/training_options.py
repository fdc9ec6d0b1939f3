"""The training options a user sets, declared once as typed groups (``data.<group>.<option>``).

:class:`histoseg.datamodules.SlideDataModule` takes one object of each group and passes it on
whole: :class:`~histoseg.labels.grid.LabelOptions` (``data.labels``) to the label builders,
:class:`PatchSampling` (``data.patches``) to the patch datasets, :class:`LossWeighting`
(``data.weighting``) to the class and border weights, :class:`Augmentation`
(``data.augmentation``) to :func:`histoseg.transforms.augment_batch` and :class:`LoaderOptions`
(``data.loader``) to the DataLoaders. LightningCLI shows every field with its help
(``histoseg fit --help``); in a YAML config each group is a block under ``data.init_args``::

    data:
      class_path: histoseg.datamodules.SlideDataModule
      init_args:
        slides: slides.csv
        mpp: 1.0
        labels: {brush_um: 3.0}
        patches: {patch_size: 256, batch_size: 8, class_balanced: true}

:data:`MOVED_OPTIONS` maps each option's flat name of earlier versions (``data.brush_um``) to its
place in a group, derived from the groups' fields, so an old config fails with one line that
says where the option went.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from histoseg.labels.grid import LabelOptions

T = TypeVar("T")

ClassWeighting = Literal["none", "inverse_frequency", "sqrt_inverse_frequency"]


@dataclass(frozen=True)
class PatchSampling:
    """Which patches a fit trains and validates on (``data.patches.*``).

    Args:
        patch_size: Patch side in pixels at ``data.mpp`` (U-Nets need a multiple of 32).
        batch_size: Patches per batch.
        patches_per_epoch: Random training patches per epoch.
        val_patches: Maximum validation (and test) patches, a fixed grid over labelled extents.
        class_balanced: Draw training patch centres uniformly over classes.
        centered: Put the drawn labelled pixel at the patch centre (patch classification).
    """

    patch_size: int = 256
    batch_size: int = 8
    patches_per_epoch: int = 256
    val_patches: int = 64
    class_balanced: bool = False
    centered: bool = False


@dataclass(frozen=True)
class LossWeighting:
    """Per-pixel weights of the loss: class weights and the Ronneberger border term (``data.weighting.*``).

    Args:
        class_weighting: ``w_c`` of the loss: none, inverse_frequency or sqrt_inverse_frequency
            (mean 1 over training pixels).
        border_w0: Amplitude ``w0`` of the Ronneberger border term (0 = off; paper: 10). Applies
            to dense labels; scribbles and points have no object boundaries and get class weights only.
        border_sigma_um: Width ``sigma`` of the border term in microns (5 px at 0.5 um/px = 2.5 um).
        border_object_classes: Classes whose connected components are objects of the border term.
    """

    class_weighting: ClassWeighting = "none"
    border_w0: float = 0.0
    border_sigma_um: float = 2.5
    border_object_classes: list[str] = field(default_factory=lambda: ["tubules", "glomeruli"])


@dataclass(frozen=True)
class Augmentation:
    """Random changes to training batches, made on the device after transfer (``data.augmentation.*``).

    Args:
        enabled: Random flips / 90-degree rotations / colour jitter on training batches.
        color_jitter: Strength of the colour jitter.
        stain_jitter: Experimental: strength ``sigma`` of the HED stain jitter (Tellez et al. 2018;
            0 = off, 0.05 light, 0.2 strong): each stain's optical density scaled by U(1 +- sigma)
            and shifted by U(+-sigma) (:func:`histoseg.transforms.hed_jitter`). Kept for slides from
            several labs: on the single-lab FLASH tiles it changed nothing beyond the seed spread.
    """

    enabled: bool = True
    color_jitter: float = 0.05
    stain_jitter: float = 0.0


@dataclass(frozen=True)
class LoaderOptions:
    """How patches are read: DataLoader workers and memory (``data.loader.*``).

    Args:
        num_workers: DataLoader worker processes reading patches and computing weight maps.
        prefetch_factor: Batches each worker prepares ahead (only with ``num_workers > 0``).
        persistent_workers: Keep the workers (and their open slides) between epochs instead of
            starting them again (only with ``num_workers > 0``).
        pin_memory: Page-locked batches for faster, non-blocking copies to a GPU; null = on when
            CUDA is available.
    """

    num_workers: int = 0
    prefetch_factor: int = 2
    persistent_workers: bool = True
    pin_memory: bool | None = None


OPTION_GROUPS: dict[str, type] = {
    "labels": LabelOptions,
    "patches": PatchSampling,
    "weighting": LossWeighting,
    "augmentation": Augmentation,
    "loader": LoaderOptions,
}
"""``data.<group>`` -> its option class."""

_RENAMED = {
    "augment": "augmentation.enabled",
    "scribble_grow_um": "labels.grow_um",
    "scribble_grow_classes": "labels.grow_classes",
}


def _moved_options() -> dict[str, str]:
    moved = {
        f.name: f"{group}.{f.name}" for group, kind in OPTION_GROUPS.items() for f in dataclasses.fields(kind)
    }
    moved.update(_RENAMED)
    for name in ("enabled", "grow_um", "grow_classes"):
        moved.pop(name, None)  # new names inside their group, never flat options
    return moved


MOVED_OPTIONS: dict[str, str] = _moved_options()
"""Flat ``data.<name>`` of earlier versions -> ``<group>.<name>`` (derived from the groups' fields)."""


def group_options(**options: object) -> dict[str, object]:
    """Datamodule arguments from flat option names: each moved option put into its group.

    For Python callers (benchmarks, notebooks) that list options by name, as configs did before
    the groups; names that are not moved pass through unchanged.

    Example:
        >>> args = group_options(mpp=0.5, patch_size=128, brush_um=3.0)
        >>> args["mpp"], args["patches"].patch_size, args["labels"].brush_um
        (0.5, 128, 3.0)
    """
    args: dict[str, object] = {}
    fields: dict[str, dict[str, object]] = {}
    for name, value in options.items():
        if name in MOVED_OPTIONS:
            group, field_name = MOVED_OPTIONS[name].split(".")
            fields.setdefault(group, {})[field_name] = value
        else:
            args[name] = value
    for group, values in fields.items():
        args[group] = OPTION_GROUPS[group](**values)
    return args


def as_group(kind: type[T], value: T | Mapping[str, Any]) -> T:
    """``value`` as an object of the group ``kind``: a plain mapping (the hyper-parameters a checkpoint
    stores, ``LightningDataModule.load_from_checkpoint``) becomes one; an object passes unchanged."""
    return kind(**value) if isinstance(value, Mapping) else value


def as_plain(value: object) -> object:
    """A group as a plain dict (checkpoint hyper-parameters are read with ``weights_only=True``)."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value  # type: ignore[arg-type]


__all__ = [
    "MOVED_OPTIONS",
    "OPTION_GROUPS",
    "Augmentation",
    "ClassWeighting",
    "LabelOptions",
    "LoaderOptions",
    "LossWeighting",
    "PatchSampling",
    "as_group",
    "as_plain",
    "group_options",
]
