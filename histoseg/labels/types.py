"""The types shared by the slide table, the label-grid registry and the label kinds' builders.

:class:`SlideRecord` (a slide-table row, read by :mod:`histoseg.labels.table`) and
:class:`GridOptions` (how labels go on the training grid, :mod:`histoseg.labels.grid`) live here,
below both, so the builders of each label kind (``dense``, ``points``, ``scribbles``) can name
them without importing the registry that imports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SlideRecord:
    """One row of a slide table.

    Attributes:
        slide: The slide file.
        labels: Its label file (None = unlabelled).
        kind: Label kind: a key of :data:`histoseg.labels.grid.LABEL_GRIDS` or ``"none"``.
        split: ``train``, ``val``, ``test`` or ``predict``.
        mpp: Level-0 mpp override (None = the slide's metadata).
        label_offset: Level-0 ``(x, y)`` of a dense mask's top-left pixel.
    """

    slide: Path
    labels: Path | None = None
    kind: str = "dense"
    split: str = "train"
    mpp: float | None = None
    label_offset: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class GridOptions:
    """How labels are put on the training grid (each builder reads the options of its kind).

    Attributes:
        classes: Class names in label-index order.
        mpp: Training resolution (microns per pixel).
        value_map: Dense masks: ``{raw value: class name | "ignore"}`` (None = values are indices).
        white_value_map: Dense masks: ``{raw value: class name}`` for white pixels of those values.
        brush_um: Scribbles: stroke width in microns.
        point_radius_um: Points: radius of each labelled disc in microns (0 = one pixel).
        margin_px: Points: training pixels kept around the points' bounding box.
        scribble_colours: Scribble images: ``{class name: [r, g, b]}``.
        grow_um: Scribbles: grow each stroke's class to the colour superpixels (about ``grow_um``
            microns across) it touches alone (:func:`histoseg.labels.superpixels.grow_to_superpixels`);
            0 = off.
        grow_classes: Class indices whose strokes grow (None = all).
    """

    classes: Sequence[str]
    mpp: float
    value_map: Mapping[int, str] | None = None
    white_value_map: Mapping[int, str] | None = None
    brush_um: float = 2.0
    point_radius_um: float = 0.0
    margin_px: int = 0
    scribble_colours: Mapping[str, Sequence[int] | str] | None = None
    grow_um: float = 0.0
    grow_classes: Sequence[int] | None = None


__all__ = ["GridOptions", "SlideRecord"]
