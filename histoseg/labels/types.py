"""The types shared by the slide table, the label-grid registry and the label kinds' builders.

:class:`SlideRecord` (a slide-table row, read by :mod:`histoseg.labels.table`) and
:class:`LabelOptions` / :class:`GridOptions` (how labels go on the training grid,
:mod:`histoseg.labels.grid`; ``data.labels`` of the datamodule) live here,
below both, so the builders of each label kind (``dense``, ``points``, ``scribbles``) can name
them without importing the registry that imports them.
"""

from __future__ import annotations

import dataclasses
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


__all__ = ["GridOptions", "LabelOptions", "SlideRecord"]
