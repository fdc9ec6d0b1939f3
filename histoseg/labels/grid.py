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

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from histoseg import IGNORE_INDEX
from histoseg.errors import LabelError
from histoseg.io.slide import Slide
from histoseg.labels.dense import dense_grid
from histoseg.labels.points import points_grid, points_sparse
from histoseg.labels.scribbles import scribbles_grid, scribbles_sparse
from histoseg.labels.types import GridOptions, LabelOptions, SlideRecord


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
