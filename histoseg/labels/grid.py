"""One entry point from a slide-table row to its label grid, through a registry of label kinds.

:func:`build_label_grid` opens a row's slide and hands it to the builder of the row's label
kind (:data:`LABEL_GRIDS`), which returns a uint8 *label grid* at the training mpp (255 =
unlabelled) and its level-0 origin. A builder is a function
``(record, slide, options) -> (labels, origin)``; adding a label kind is one module holding its
reader and builder plus one line in :data:`LABEL_GRIDS` (the slide table accepts every key).

Example:
    >>> from histoseg.labels.grid import LABEL_GRIDS, label_kinds
    >>> label_kinds()
    ('dense', 'points', 'scribbles')
    >>> LABEL_GRIDS["points"].__module__
    'histoseg.labels.points'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from histoseg import IGNORE_INDEX
from histoseg.errors import LabelError
from histoseg.io.slide import Slide
from histoseg.labels.dense import dense_grid
from histoseg.labels.points import points_grid, points_sparse
from histoseg.labels.scribbles import scribbles_grid, scribbles_sparse

if TYPE_CHECKING:
    from histoseg.labels.table import SlideRecord


@dataclass(frozen=True)
class LabelOptions:
    """How a slide's labels become training labels (``data.labels.*``; each label kind reads its own).

    Args:
        value_map: Dense masks: ``{raw value: class name | "ignore"}``; null = the values are class
            indices (255 = unlabelled).
        white_value_map: Dense masks: ``{raw value: class name}`` applied to white (glass/lumen)
            pixels of those values (tissue rule in :mod:`histoseg.io.tissue`).
        brush_um: Scribbles: brush width in microns.
        point_radius_um: Grid points: radius of the labelled disc around each point in microns
            (0 = one pixel).
        scribble_colours: Colour-coded scribble images (kind=scribbles rows with a PNG/TIFF of the
            slide's level-0 size): ``{class name: [r, g, b]}``; white, black and transparent pixels
            are unlabelled.
        grow_um: Scribbles: grow each stroke's class to the colour superpixels (SLIC, about this many
            microns across) that it alone touches, before training (ScribbleSup-style label
            propagation, :func:`histoseg.labels.superpixels.grow_to_superpixels`); 0 = train on the
            strokes only.
        grow_classes: Scribbles: classes whose strokes grow; null = every class. (Grown interstitium
            labels are the least accurate, since the thin interstitium shares superpixels with tubule
            membranes, but leaving it out unbalanced the labels and lowered its Dice on FLASH; see
            docs/benchmarks.md.)
    """

    value_map: Mapping[int, str] | None = None
    white_value_map: Mapping[int, str] | None = None
    brush_um: float = 2.0
    point_radius_um: float = 0.0
    scribble_colours: Mapping[str, Sequence[int] | str] | None = None
    grow_um: float = 0.0
    grow_classes: Sequence[str] | None = None


@dataclass(frozen=True, kw_only=True)
class GridOptions(LabelOptions):
    """The user's :class:`LabelOptions` on one training grid (what every label builder reads).

    Args:
        classes: Class names in label-index order.
        mpp: Training resolution (microns per pixel).
        margin_px: Points: training pixels kept around the points' bounding box.
    """

    classes: Sequence[str]
    mpp: float
    margin_px: int = 0

    @classmethod
    def on_grid(
        cls, labels: LabelOptions, classes: Sequence[str], mpp: float, margin_px: int = 0
    ) -> GridOptions:
        """``labels`` on the grid of ``classes`` at ``mpp``."""
        fields = {f.name: getattr(labels, f.name) for f in dataclasses.fields(LabelOptions)}
        return cls(**fields, classes=classes, mpp=mpp, margin_px=margin_px)

    def grow_class_indices(self) -> list[int] | None:
        """Indices of :attr:`grow_classes` in :attr:`classes` (None = every class; unknown names skipped)."""
        if self.grow_classes is None:
            return None
        return [list(self.classes).index(c) for c in self.grow_classes if c in self.classes]


class GridBuilder(Protocol):
    """Puts one label kind on the training grid: ``(labels (H, W) uint8, level-0 origin (x, y))``."""

    def __call__(
        self, record: SlideRecord, slide: Slide, options: GridOptions
    ) -> tuple[np.ndarray, tuple[float, float]]:
        """Return the row's ``(labels, origin)`` on the grid of ``options.mpp``."""
        ...


LABEL_GRIDS: dict[str, GridBuilder] = {
    "dense": dense_grid,
    "points": points_grid,
    "scribbles": scribbles_grid,
}
"""Label kind -> its grid builder. The slide table's ``kind`` column takes these keys (or ``none``)."""


class SparseBuilder(Protocol):
    """A label kind's labelled pixels alone: ``(shape, flat, values, origin)``.

    None when this row needs the whole-grid builder (see :mod:`histoseg.labels.store`).
    """

    def __call__(
        self, record: SlideRecord, slide: Slide, options: GridOptions
    ) -> tuple[tuple[int, int], np.ndarray, np.ndarray, tuple[float, float]] | None:
        """Return the labelled pixels of the grid its :data:`LABEL_GRIDS` builder makes."""
        ...


SPARSE_GRIDS: dict[str, SparseBuilder] = {
    "points": points_sparse,
    "scribbles": scribbles_sparse,
}
"""Label kind -> a builder of its labelled pixels alone (same grid, no whole-slide array)."""


def label_kinds() -> tuple[str, ...]:
    """The registered label kinds, in registry order."""
    return tuple(LABEL_GRIDS)


@dataclass
class LabelGrid:
    """A slide's labels on the training grid.

    Attributes:
        labels: (H, W) uint8 class indices at the training mpp, 255 = unlabelled.
        origin: Level-0 ``(x, y)`` of ``labels[0, 0]``.
        scale: Level-0 pixels per training pixel (``mpp / slide_mpp``).
        slide_mpp: Level-0 mpp of the slide (metadata or the table's override).
    """

    labels: np.ndarray
    origin: tuple[float, float]
    scale: float
    slide_mpp: float


def check_labelled_row(record: SlideRecord) -> GridBuilder:
    """The grid builder of a row's label kind.

    Raises:
        LabelError: the row has no labels or its kind is not registered.
    """
    if record.labels is None or record.kind == "none":
        raise LabelError(
            f"{record.slide}: no labels for a {record.split} slide; add a labels file to the slide table"
        )
    builder = LABEL_GRIDS.get(record.kind)
    if builder is None:
        raise LabelError(
            f"{record.labels}: unknown label kind {record.kind!r}; "
            f"use one of {', '.join(label_kinds())} in the slide table's kind column"
        )
    return builder


def build_label_grid(record: SlideRecord, options: GridOptions) -> LabelGrid:
    """Open a row's slide and put its labels on the training grid at ``options.mpp``.

    Raises:
        LabelError: the row has no labels, its kind is not registered, or its labels leave no
            labelled pixel at this mpp.
        HistosegError: unreadable slide or labels (see the builders).
    """
    builder = check_labelled_row(record)
    with Slide(Path(record.slide), mpp=record.mpp) as slide:
        labels, origin = builder(record, slide, options)
        grid = LabelGrid(labels, origin, options.mpp / slide.mpp, slide.mpp)
    if not (grid.labels != IGNORE_INDEX).any():
        raise LabelError(
            f"{record.labels}: no labelled pixel at mpp {options.mpp}; check the labels and value map"
        )
    return grid


__all__ = [
    "LABEL_GRIDS",
    "SPARSE_GRIDS",
    "GridBuilder",
    "GridOptions",
    "LabelGrid",
    "LabelOptions",
    "SparseBuilder",
    "build_label_grid",
    "check_labelled_row",
    "label_kinds",
]
