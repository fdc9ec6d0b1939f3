"""Slide tables, labelled slides at a training resolution, and patch datasets.

Data flow (training):

1. :func:`read_slide_table` reads a CSV listing slides, their labels, kind and split.
2. :func:`prepare_labelled_slide` opens each slide, loads its labels (dense mask, grid points or
   scribbles) and resamples them to the training resolution: a uint8 *label grid* at ``mpp``
   (255 = unlabelled) with its level-0 origin.
3. :class:`RandomPatchDataset` draws patches around labelled pixels (optionally class-balanced);
   :class:`GridPatchDataset` tiles the labelled extent for validation. Both return a
   :class:`Sample`: image (3, P, P) uint8, mask (P, P) int64, weight (P, P) float32 (the
   Ronneberger weight map, see :mod:`histoseg.models.losses`).

Indices are deterministic: the random dataset derives each patch from ``(seed, index)``, and
:class:`EpochSampler` hands out fresh indices every epoch, so a run is reproducible with any
number of DataLoader workers.

Slide table columns (CSV, header required; paths relative to the CSV's folder):
``slide`` (required), ``labels`` (mask / points / scribbles file, may be empty), ``kind``
(``dense`` | ``points`` | ``scribbles`` | ``none``; default: ``dense`` when labels are given),
``split`` (``train`` | ``val`` | ``test`` | ``predict``; default ``train``), ``mpp`` (level-0 mpp
override), ``label_offset_x``, ``label_offset_y`` (level-0 position of a dense mask).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from histoseg import IGNORE_INDEX
from histoseg.errors import ConfigError, LabelError
from histoseg.io.slide import Slide, check_mpp
from histoseg.io.text import read_table_text
from histoseg.labels.dense import load_dense_labels, resample_labels
from histoseg.models.losses import border_weight_map

LabelKind = Literal["dense", "points", "scribbles", "none"]
SPLITS = ("train", "val", "test", "predict")


class Sample(TypedDict):
    """One training patch (tensors only)."""

    image: torch.Tensor  # (3, P, P) uint8
    mask: torch.Tensor  # (P, P) int64, 255 = unlabelled
    weight: torch.Tensor  # (P, P) float32


@dataclass
class SlideRecord:
    """One row of a slide table."""

    slide: Path
    labels: Path | None = None
    kind: LabelKind = "dense"
    split: str = "train"
    mpp: float | None = None
    label_offset: tuple[int, int] = (0, 0)


def _float_or_none(value: str | None, where: str) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a number; fix the slide table") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}: {value!r} is not a finite number; fix the slide table")
    return number


def _table_mpp(value: str | None, where: str) -> float | None:
    """The ``mpp`` cell: empty (use the slide's metadata) or a plausible resolution (see ``check_mpp``)."""
    number = _float_or_none(value, where)
    return None if number is None else check_mpp(number, f"{where}: mpp")


def read_slide_table(path: str | os.PathLike[str]) -> list[SlideRecord]:
    """Read a slide table CSV (see module docstring for its columns).

    Raises:
        ConfigError: missing file or ``slide`` column, unknown kind or split, bad numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: slide table not found; set data.slides to a CSV with a 'slide' column")
    base = path.parent
    records: list[SlideRecord] = []
    text, _ = read_table_text(path)
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "slide" not in reader.fieldnames:
            raise ConfigError(
                f"{path}: slide table needs a header with a 'slide' column (and optionally labels, kind, split, mpp)"
            )
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            slide = (row.get("slide") or "").strip()
            if not slide:
                raise ConfigError(f"{where}: empty 'slide' value; give a slide path or remove the row")
            labels = (row.get("labels") or "").strip()
            kind = (row.get("kind") or "").strip() or ("dense" if labels else "none")
            if kind not in ("dense", "points", "scribbles", "none"):
                raise ConfigError(f"{where}: kind {kind!r} must be dense, points, scribbles or none")
            split = (row.get("split") or "").strip() or "train"
            if split not in SPLITS:
                raise ConfigError(f"{where}: split {split!r} must be one of {', '.join(SPLITS)}")
            ox = _float_or_none(row.get("label_offset_x"), where) or 0.0
            oy = _float_or_none(row.get("label_offset_y"), where) or 0.0
            records.append(
                SlideRecord(
                    slide=(base / slide).resolve() if not os.path.isabs(slide) else Path(slide),
                    labels=((base / labels).resolve() if not os.path.isabs(labels) else Path(labels))
                    if labels
                    else None,
                    kind=kind,  # type: ignore[arg-type]
                    split=split,
                    mpp=_table_mpp(row.get("mpp"), f"{where} ({slide})"),
                    label_offset=(int(ox), int(oy)),
                )
            )
    if not records:
        raise ConfigError(f"{path}: slide table has no rows; add at least one slide")
    return records


@dataclass
class LabelledSlide:
    """A slide with its labels on the training grid.

    Attributes:
        path: Slide file.
        slide_mpp: Level-0 mpp of the slide.
        slide_mpp_override: The mpp override from the table (None = metadata).
        scale: Level-0 pixels per training pixel (``mpp / slide_mpp``).
        origin: Level-0 ``(x, y)`` of ``labels[0, 0]``.
        labels: (H, W) uint8 class indices at the training mpp, 255 = unlabelled.
        kind: Label kind.
    """

    path: Path
    slide_mpp: float
    slide_mpp_override: float | None
    scale: float
    origin: tuple[float, float]
    labels: np.ndarray
    kind: LabelKind = "dense"
    class_positions: dict[int, np.ndarray] = field(default_factory=dict)

    def counts(self, num_classes: int) -> np.ndarray:
        """Labelled pixel count per class, (num_classes,) int64."""
        return np.bincount(self.labels[self.labels != IGNORE_INDEX].ravel(), minlength=num_classes)[
            :num_classes
        ]

    def index_positions(self, max_per_class: int = 200_000, seed: int = 0) -> None:
        """Store (a random subset of) the flat positions of each class's labelled pixels."""
        rng = np.random.default_rng(seed)
        flat = self.labels.ravel()
        for cls in np.unique(flat):
            if cls == IGNORE_INDEX:
                continue
            pos = np.flatnonzero(flat == cls)
            if pos.size > max_per_class:
                pos = np.sort(rng.choice(pos, max_per_class, replace=False))
            self.class_positions[int(cls)] = pos.astype(np.int64)


def prepare_labelled_slide(
    record: SlideRecord,
    classes: Sequence[str],
    mpp: float,
    *,
    value_map: Mapping[int, str] | None = None,
    white_value_map: Mapping[int, str] | None = None,
    brush_um: float = 2.0,
    point_radius_um: float = 0.0,
    margin_px: int = 0,
    scribble_colours: Mapping[str, Sequence[int] | str] | None = None,
    grow_um: float = 0.0,
    grow_classes: Sequence[int] | None = None,
) -> LabelledSlide:
    """Open a slide and put its labels on the training grid at ``mpp``.

    Args:
        record: Slide table row (with labels).
        classes: Class names.
        mpp: Training resolution (microns per pixel).
        value_map: Dense masks: ``{raw value: class name | "ignore"}``.
        white_value_map: Dense masks: ``{raw value: class name}`` for white pixels of those values.
        brush_um: Scribbles: stroke width in microns.
        point_radius_um: Points: radius of each labelled disc in microns (0 = one pixel).
        margin_px: Points: training pixels kept around the points' bounding box.
        scribble_colours: Scribble images: ``{class name: [r, g, b]}``.
        grow_um: Scribbles: grow each stroke's class to the colour superpixels (about ``grow_um``
            microns across) it touches alone (:func:`histoseg.labels.scribbles.grow_to_superpixels`);
            0 = off.
        grow_classes: Class indices whose strokes grow (None = all).

    Raises:
        HistosegError: unreadable slide or labels (see the loaders).
    """
    if record.labels is None or record.kind == "none":
        raise LabelError(
            f"{record.slide}: no labels for a {record.split} slide; add a labels file to the slide table"
        )
    with Slide(record.slide, mpp=record.mpp) as slide:
        scale = mpp / slide.mpp
        width, height = slide.dimensions
        if record.kind == "dense":
            image = None
            ox, oy = record.label_offset
            if white_value_map:
                from histoseg.labels.dense import read_mask_file

                h, w = read_mask_file(record.labels).shape
                if ox < 0 or oy < 0 or ox + w > width or oy + h > height:
                    image = None  # load_dense_labels reports the size error
                else:
                    image = slide.read_region(ox, oy, w, h, 0)
            level0 = load_dense_labels(
                record.labels,
                classes,
                image_size=(width, height),
                value_map=value_map,
                offset=record.label_offset,
                white_value_map=white_value_map if image is not None else None,
                image=image,
            )
            out_shape = (
                max(1, math.floor(level0.shape[0] / scale)),
                max(1, math.floor(level0.shape[1] / scale)),
            )
            grid = resample_labels(level0, (ox, oy), scale, (ox, oy), out_shape)
            origin: tuple[float, float] = (float(ox), float(oy))
        elif record.kind == "points":
            from histoseg.labels.points import rasterize_points, read_points

            points = read_points(record.labels, classes, slide_size=(width, height))
            x0 = max(0.0, float(points.x.min()) - margin_px * scale)
            y0 = max(0.0, float(points.y.min()) - margin_px * scale)
            x1 = min(float(width), float(points.x.max()) + (margin_px + 1) * scale)
            y1 = min(float(height), float(points.y.max()) + (margin_px + 1) * scale)
            x0 = math.floor(x0 / scale) * scale
            y0 = math.floor(y0 / scale) * scale
            shape = (max(1, math.ceil((y1 - y0) / scale)), max(1, math.ceil((x1 - x0) / scale)))
            shifted = type(points)(x=points.x - x0, y=points.y - y0, label=points.label)
            grid = rasterize_points(shifted, shape, scale, radius_px=round(point_radius_um / mpp))
            origin = (x0, y0)
        elif record.kind == "scribbles" and record.labels.suffix.lower() in (".png", ".tif", ".tiff", ".bmp"):
            from histoseg.labels.scribbles import read_scribble_image

            level0 = read_scribble_image(
                record.labels, scribble_colours or {}, classes, shape=(height, width)
            )
            shape = (max(1, math.floor(height / scale)), max(1, math.floor(width / scale)))
            grid = _resample_sparse(level0, scale, shape)
            origin = (0.0, 0.0)
        elif record.kind == "scribbles":
            from histoseg.labels.scribbles import read_scribbles_geojson

            shape = (max(1, math.floor(height / scale)), max(1, math.floor(width / scale)))
            grid, _warnings = read_scribbles_geojson(
                record.labels,
                classes,
                shape=shape,
                scale=scale,
                brush_px=brush_um / mpp,
                slide_size=(width, height),
            )
            for message in _warnings:
                import logging

                logging.getLogger(__name__).warning("%s: %s", record.labels, message)
            origin = (0.0, 0.0)
        else:  # pragma: no cover - guarded by read_slide_table
            raise LabelError(f"{record.labels}: unknown label kind {record.kind!r}")
        if not (grid != IGNORE_INDEX).any():
            raise LabelError(
                f"{record.labels}: no labelled pixel at mpp {mpp}; check the labels and value map"
            )
        if grow_um > 0 and record.kind == "scribbles":
            grid = grow_scribbles_on_slide(slide, grid, scale, mpp, grow_um / mpp, classes=grow_classes)
        return LabelledSlide(
            path=record.slide,
            slide_mpp=slide.mpp,
            slide_mpp_override=record.mpp,
            scale=scale,
            origin=origin,
            labels=grid,
            kind=record.kind,
        )


def _windows_near_labels(
    grid: np.ndarray, halo: int, window: int
) -> Iterator[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Windows of a label grid that hold labelled pixels within ``halo`` of them.

    Yields:
        ``((r0, r1, c0, c1), (R0, R1, C0, C1))``: a window's inner part (tiles the grid) and the
        same window grown by ``halo`` (clipped to the grid), both in grid pixels.
    """
    height, width = grid.shape
    labelled = grid != IGNORE_INDEX
    for r0 in range(0, height, window):
        for c0 in range(0, width, window):
            r1, c1 = min(height, r0 + window), min(width, c0 + window)
            R0, C0 = max(0, r0 - halo), max(0, c0 - halo)
            R1, C1 = min(height, r1 + halo), min(width, c1 + halo)
            if labelled[R0:R1, C0:C1].any():
                yield (r0, r1, c0, c1), (R0, R1, C0, C1)


def grow_scribbles_on_slide(
    slide: Slide,
    grid: np.ndarray,
    scale: float,
    mpp: float,
    segment_px: float,
    window: int = 1024,
    classes: Sequence[int] | None = None,
) -> np.ndarray:
    """Grow a scribble label grid (origin at level-0 (0, 0)) to superpixels, window by window.

    Only windows holding labelled pixels are read (at ``mpp``), so a whole-slide grid with a few
    strokes costs a few reads; windows overlap by two superpixels and a window keeps the result of
    its inner part only, so superpixels cut by a window edge are not trusted.

    Args:
        slide: The open slide.
        grid: (H, W) uint8 scribble labels at ``mpp``, 255 = unlabelled.
        scale: Level-0 pixels per grid pixel.
        mpp: Grid resolution (microns per pixel).
        segment_px: Superpixel side in grid pixels.
        window: Window side in grid pixels (inner part).
        classes: Class indices whose strokes grow (None = all).

    Returns:
        (H, W) uint8 grown labels.
    """
    from histoseg.labels.scribbles import grow_to_superpixels

    out = grid.copy()
    for (r0, r1, c0, c1), (R0, R1, C0, C1) in _windows_near_labels(grid, math.ceil(2 * segment_px), window):
        image = slide.read_at_mpp(round(C0 * scale), round(R0 * scale), C1 - C0, R1 - R0, mpp)
        grown = grow_to_superpixels(grid[R0:R1, C0:C1], image, segment_px, classes=classes)
        out[r0:r1, c0:c1] = grown[r0 - R0 : r1 - R0, c0 - C0 : c1 - C0]
    return out


def pseudo_label_slide(
    item: LabelledSlide,
    seeds: np.ndarray,
    probabilities: Callable[[np.ndarray], np.ndarray],
    mpp: float,
    segment_px: float,
    threshold: float,
    *,
    halo: int = 64,
    window: int = 1024,
) -> np.ndarray:
    """Superpixel pseudo-labels of one training slide around its scribbles, window by window.

    Each window holding scribbles is read at ``mpp`` with a ``halo`` of context (the model's
    receptive field and the superpixels cut by the window edge), the model's class
    probabilities are averaged over its superpixels and only the inner part is kept
    (:func:`histoseg.labels.scribbles.superpixel_pseudo_labels`).

    Args:
        item: The labelled slide (its path, scale and origin are used).
        seeds: (H, W) uint8 scribble labels on the item's grid (strokes, possibly grown).
        probabilities: Maps an (h, w, 3) uint8 RGB image to (C, h, w) float class probabilities.
        mpp: Grid resolution (microns per pixel).
        segment_px: Superpixel side in grid pixels.
        threshold: Minimum superpixel-mean probability of the best class.
        halo: Context pixels around each window (grid pixels).
        window: Window side in grid pixels (inner part).

    Returns:
        (H, W) uint8 labels: the seeds plus confident superpixels.
    """
    from histoseg.labels.scribbles import superpixel_pseudo_labels

    out = seeds.copy()
    halo = max(halo, math.ceil(2 * segment_px))
    with Slide(item.path, mpp=item.slide_mpp_override) as slide:
        for (r0, r1, c0, c1), (R0, R1, C0, C1) in _windows_near_labels(seeds, halo, window):
            x = round(item.origin[0] + C0 * item.scale)
            y = round(item.origin[1] + R0 * item.scale)
            image = np.ascontiguousarray(slide.read_at_mpp(x, y, C1 - C0, R1 - R0, mpp))
            labels = superpixel_pseudo_labels(
                seeds[R0:R1, C0:C1], probabilities(image), image, segment_px, threshold=threshold
            )
            out[r0:r1, c0:c1] = labels[r0 - R0 : r1 - R0, c0 - C0 : c1 - C0]
    return out


def _resample_sparse(level0: np.ndarray, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """Sparse level-0 labels onto a coarser grid.

    A training pixel takes a labelled value from its footprint (the last in raster order, so thin
    strokes survive downsampling), 255 when its footprint holds none.
    """
    if scale <= 1.0:
        return resample_labels(level0, (0, 0), scale, (0, 0), shape)
    out = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
    rows, cols = np.nonzero(level0 != IGNORE_INDEX)
    r = np.minimum((rows / scale).astype(np.int64), shape[0] - 1)
    c = np.minimum((cols / scale).astype(np.int64), shape[1] - 1)
    values = level0[rows, cols]
    out[r, c] = values
    return out


class _SlideReader:
    """Lazily opened slides, one set per DataLoader worker (handles are not picklable)."""

    def __init__(self) -> None:
        self._open: dict[Path, Slide] = {}

    def get(self, item: LabelledSlide) -> Slide:
        slide = self._open.get(item.path)
        if slide is None:
            slide = Slide(item.path, mpp=item.slide_mpp_override)
            self._open[item.path] = slide
        return slide

    def __getstate__(self) -> dict[str, Any]:
        return {"_open": {}}


@dataclass
class PatchOptions:
    """How patches are cut and weighted.

    Attributes:
        patch_size: Patch side in training pixels.
        mpp: Training resolution.
        object_classes: Class indices whose components are objects of the border term.
        border_w0: Amplitude of the border term (0 = off); applied to dense labels only.
        border_sigma_px: Width of the border term in training pixels.
        class_weights: ``{class: w_c}`` (empty = 1 for all).
    """

    patch_size: int
    mpp: float
    object_classes: tuple[int, ...] = ()
    border_w0: float = 0.0
    border_sigma_px: float = 5.0
    class_weights: dict[int, float] = field(default_factory=dict)


class _PatchCutter:
    """Cuts image, mask and weight patches from labelled slides (shared by the datasets)."""

    def __init__(self, slides: Sequence[LabelledSlide], options: PatchOptions) -> None:
        self.slides = list(slides)
        self.options = options
        self.reader = _SlideReader()

    def _mask_window(self, item: LabelledSlide, row: int, col: int, size: int) -> np.ndarray:
        out = np.full((size, size), IGNORE_INDEX, dtype=np.uint8)
        h, w = item.labels.shape
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + size, h), min(col + size, w)
        if r1 > r0 and c1 > c0:
            out[r0 - row : r1 - row, c0 - col : c1 - col] = item.labels[r0:r1, c0:c1]
        return out

    def cut(self, slide_index: int, row: int, col: int) -> Sample:
        """Patch whose top-left training pixel is ``(row, col)`` of the slide's label grid."""
        opts = self.options
        item = self.slides[slide_index]
        size = opts.patch_size
        x = item.origin[0] + col * item.scale
        y = item.origin[1] + row * item.scale
        image = self.reader.get(item).read_at_mpp(round(x), round(y), size, size, opts.mpp)
        # The border term needs object boundaries: dense masks only (a scribble's or a grid
        # point's edge is not an object's edge). Sparse labels get the class weights alone.
        if opts.border_w0 > 0 and opts.object_classes and item.kind == "dense":
            margin = int(math.ceil(3 * opts.border_sigma_px)) + 2
            window = self._mask_window(item, row - margin, col - margin, size + 2 * margin)
            weight = border_weight_map(
                window,
                opts.object_classes,
                w0=opts.border_w0,
                sigma=opts.border_sigma_px,
                class_weights=opts.class_weights or {c: 1.0 for c in range(255)},
            )[margin:-margin, margin:-margin]
            mask = window[margin:-margin, margin:-margin]
        else:
            mask = self._mask_window(item, row, col, size)
            lut = np.ones(256, dtype=np.float32)
            for cls, value in opts.class_weights.items():
                lut[cls] = value
            lut[IGNORE_INDEX] = 0.0
            weight = lut[mask]
        return Sample(
            image=torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            mask=torch.from_numpy(mask.astype(np.int64)),
            weight=torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)),
        )


class RandomPatchDataset(Dataset[Sample]):
    """Random patches around labelled pixels.

    Patch ``index`` is drawn from ``numpy.random.default_rng([seed, index])``: pick a class
    (uniformly among the classes present when ``class_balanced``, else weighted by pixel count),
    a slide holding it (weighted by its pixel count of that class), and one of its labelled pixels;
    the patch contains that pixel at a uniformly random position, or at its centre
    ``(P // 2, P // 2)`` when ``centered`` (patch classification: the label is the centre pixel's).

    Args:
        slides: Labelled slides (training grid).
        options: Patch geometry and weighting.
        num_classes: Number of classes.
        class_balanced: Draw classes uniformly instead of by frequency.
        centered: Put the drawn pixel at the patch centre.
        seed: Base seed.
    """

    def __init__(
        self,
        slides: Sequence[LabelledSlide],
        options: PatchOptions,
        num_classes: int,
        class_balanced: bool = False,
        centered: bool = False,
        seed: int = 0,
    ) -> None:
        self.cutter = _PatchCutter(slides, options)
        self.class_balanced = class_balanced
        self.centered = centered
        self.seed = seed
        for i, item in enumerate(self.cutter.slides):
            if not item.class_positions:
                item.index_positions(seed=seed + i)
        counts = np.zeros((len(self.cutter.slides), max(num_classes, 1)), dtype=np.float64)
        for i, item in enumerate(self.cutter.slides):
            for cls, pos in item.class_positions.items():
                if cls < num_classes:
                    counts[i, cls] = pos.size
        self._counts = counts
        if counts.sum() == 0:
            raise LabelError(
                "training labels hold no labelled pixel of any class; check the labels and value map"
            )
        self._present = np.flatnonzero(counts.sum(axis=0) > 0)

    def __len__(self) -> int:
        return 2**62

    def locate(self, index: int) -> tuple[int, int, int]:
        """``(slide_index, row, col)`` of patch ``index``'s top-left corner on the label grid."""
        rng = np.random.default_rng([self.seed, int(index)])
        per_class = self._counts.sum(axis=0)
        if self.class_balanced:
            cls = int(rng.choice(self._present))
        else:
            cls = int(rng.choice(per_class.size, p=per_class / per_class.sum()))
        column = self._counts[:, cls]
        slide_index = int(rng.choice(column.size, p=column / column.sum()))
        item = self.cutter.slides[slide_index]
        positions = item.class_positions[cls]
        flat = int(positions[rng.integers(positions.size)])
        row, col = divmod(flat, item.labels.shape[1])
        size = self.cutter.options.patch_size
        if self.centered:
            dr = dc = size // 2
        else:
            dr, dc = int(rng.integers(size)), int(rng.integers(size))
        return slide_index, row - dr, col - dc

    def __getitem__(self, index: int) -> Sample:
        return self.cutter.cut(*self.locate(index))


class GridPatchDataset(Dataset[Sample]):
    """Non-overlapping patches tiling each slide's labelled extent (validation / test).

    Tiles with no labelled pixel are skipped; when more than ``max_patches`` remain, an evenly
    spaced subset is kept, so the set is deterministic.
    """

    def __init__(
        self, slides: Sequence[LabelledSlide], options: PatchOptions, max_patches: int | None = None
    ) -> None:
        self.cutter = _PatchCutter(slides, options)
        size = options.patch_size
        locations: list[tuple[int, int, int]] = []
        for i, item in enumerate(self.cutter.slides):
            h, w = item.labels.shape
            rows = range(0, max(h - size, 0) + 1, size) if h >= size else [-((size - h) // 2)]
            cols = range(0, max(w - size, 0) + 1, size) if w >= size else [-((size - w) // 2)]
            for r in rows:
                for c in cols:
                    window = item.labels[max(r, 0) : r + size, max(c, 0) : c + size]
                    if (window != IGNORE_INDEX).any():
                        locations.append((i, r, c))
        if max_patches is not None and len(locations) > max_patches:
            keep = np.linspace(0, len(locations) - 1, max_patches).round().astype(int)
            locations = [locations[k] for k in keep]
        self.locations = locations

    def __len__(self) -> int:
        return len(self.locations)

    def __getitem__(self, index: int) -> Sample:
        return self.cutter.cut(*self.locations[index])


class EpochSampler(Sampler[int]):
    """Yields ``length`` fresh indices per epoch: ``epoch * length + i``.

    Lives in the main process, so the sequence is the same whatever the number of workers.
    Lightning calls :meth:`set_epoch` at the start of every epoch (also after resuming from a
    checkpoint), so epoch ``e`` always sees the same patches; without it, each iteration moves
    on to the next epoch.
    """

    def __init__(self, length: int) -> None:
        self.length = int(length)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the patches of ``epoch``."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        start = self.epoch * self.length
        self.epoch += 1
        return iter(range(start, start + self.length))

    def __len__(self) -> int:
        return self.length


class SlidePathDataset(Dataset[str]):
    """The slides of a prediction run: item ``i`` is the path of slide ``i`` (as a string).

    Item ``len(dataset)`` is ``""`` (no slide): the filler :class:`SlideShardSampler` gives a
    process that has no slide of its own, so it still runs the predict loop and its hooks.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> str:
        if index == len(self.paths):
            return ""
        return str(self.paths[index])


class SlideShardSampler(DistributedSampler):  # type: ignore[type-arg]
    """Slides ``rank, rank + world_size, ...`` of a prediction run: each slide on one process only.

    Unlike :class:`torch.utils.data.DistributedSampler` nothing is repeated to even out the
    shards (a repeated slide would be written twice, concurrently), and a process with no slide
    (fewer slides than processes) gets the single filler index ``len(dataset)``, which
    :class:`SlidePathDataset` maps to ``""`` and the writer skips. Lightning's own predict sampler
    fails outright when a shard is empty.

    Args:
        dataset: The slides (a :class:`SlidePathDataset`).
        num_replicas: Number of processes.
        rank: This process's rank.
    """

    def __init__(self, dataset: Dataset[str], num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        n = len(dataset)  # type: ignore[arg-type]
        self.indices = list(range(rank, n, num_replicas)) or [n]
        self.num_samples = len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def collate_paths(batch: list[str]) -> list[str]:
    """Keep a batch of slide paths as a list."""
    return list(batch)
