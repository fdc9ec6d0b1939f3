"""The registry of task kinds a checkpoint may name: how each rebuilds its network and tiles a slide.

A checkpoint's histoseg block names its task (``BaseTask.task_name``); everything that depends on
the kind (the network builder, the tile geometry, the default merge of tiles) is looked up here,
so adding a kind is one entry in :data:`TASK_KINDS`.

Example:
    >>> from histoseg.inference.task_kinds import TASK_KINDS
    >>> sorted(TASK_KINDS), TASK_KINDS["patch_classification"].blend
    (['patch_classification', 'segmentation'], 'crop')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn


@dataclass(frozen=True)
class Tiling:
    """How a network runs on a slide: the module to call and its tile geometry (pixels)."""

    model: nn.Module
    tile_size: int
    margin: int
    size_multiple: int
    input_size: int | None = None


@dataclass(frozen=True)
class TaskKind:
    """One task kind.

    Attributes:
        name: The name checkpoints carry (``BaseTask.task_name``).
        blend: How tiles are merged by default (``gaussian`` or ``crop``).
        build_network: Rebuilds the pure network (random weights) from the block's ``network`` arguments.
        tiling: ``(network, block, method, tile_size or None)`` -> the module and geometry for slides.
    """

    name: str
    blend: Literal["crop", "gaussian"]
    build_network: Callable[[dict[str, Any]], nn.Module]
    tiling: Callable[[nn.Module, dict[str, Any], str, int | None], Tiling]


def _build_segmentation(config: dict[str, Any]) -> nn.Module:
    from histoseg.models.segmentation import build_segmentation_model

    return build_segmentation_model(encoder_weights=None, **config)


def _tile_segmentation(
    network: nn.Module, block: dict[str, Any], method: str, tile_size: int | None
) -> Tiling:
    """U-Nets tile at 512 px (a multiple of ``2**encoder_depth``) with a 1/8-tile margin; a network with
    a fixed input size (a ViT, the block's ``input.size``) at exactly that size, a dynamic-size ViT at a
    multiple of ``input.multiple``."""
    geometry = block.get("input") or {}
    multiple = int(geometry.get("multiple") or 2 ** int(block["network"].get("encoder_depth", 5)))
    fixed = geometry.get("size")
    size = fixed or tile_size or max(512, int(block["patch_size"]))
    size = max(multiple, size // multiple * multiple)
    return Tiling(network, size, min(64, size // 8), multiple, fixed)


def _build_classifier(config: dict[str, Any]) -> nn.Module:
    from histoseg.models.classifiers import build_classifier

    return build_classifier(**config)


def _tile_classifier(
    network: nn.Module, block: dict[str, Any], method: str, tile_size: int | None
) -> Tiling:
    """Patch classifiers are convolutionalized, with a margin of half a patch."""
    from histoseg.models.dense import DensePredictor

    patch = int(block["patch_size"])
    if block["network"].get("arch") == "encoder" and method == "atrous":
        method = "upsample"  # timm trunks cannot be rewritten a trous (see histoseg.models.atrous)
    model = DensePredictor(network, patch_size=patch, method=method)  # type: ignore[arg-type]
    return Tiling(model, tile_size or 512, patch // 2, 1)


TASK_KINDS: dict[str, TaskKind] = {
    kind.name: kind
    for kind in (
        TaskKind("segmentation", "gaussian", _build_segmentation, _tile_segmentation),
        TaskKind("patch_classification", "crop", _build_classifier, _tile_classifier),
    )
}
"""Every task kind, by the name its checkpoints carry."""

__all__ = ["TASK_KINDS", "TaskKind", "Tiling"]
