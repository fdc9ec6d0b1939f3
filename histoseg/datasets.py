"""Labelled slides at a training resolution, patch datasets and samplers.

Data flow (training):

1. :func:`histoseg.labels.table.read_slide_table` reads a CSV listing slides, their labels, kind
   and split (its columns are described there).
2. :func:`prepare_labelled_slide` puts each slide's labels (dense mask, grid points or
   scribbles) on the training grid at ``mpp`` (255 = unlabelled) with its level-0 origin, stored
   by what was drawn and cached on disk (:mod:`histoseg.labels.store`), ready for sampling.
3. :class:`RandomPatchDataset` draws patches around labelled pixels (optionally class-balanced);
   :class:`GridPatchDataset` tiles the labelled extent for validation. Both return a
   :class:`Sample`: image (3, P, P) uint8, mask (P, P) int64, weight (P, P) float32 (the
   Ronneberger weight map, see :mod:`histoseg.labels.weight_maps`).

Indices are deterministic: the random dataset derives each patch from ``(seed, index)``, and
:class:`EpochSampler` hands out fresh indices every epoch, so a run is reproducible with any
number of DataLoader workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from histoseg import IGNORE_INDEX
from histoseg.errors import LabelError
from histoseg.io.slide import Slide
from histoseg.labels.grid import GridOptions
from histoseg.labels.store import PreparedLabels, TiledLabels, prepare_labels
from histoseg.labels.table import SlideRecord
from histoseg.labels.weight_maps import border_weight_map


class Sample(TypedDict):
    """One training patch (tensors only)."""

    image: torch.Tensor  # (3, P, P) uint8
    mask: torch.Tensor  # (P, P) int64, 255 = unlabelled
    weight: torch.Tensor  # (P, P) float32


@dataclass
class LabelledSlide:
    """A slide with its labels on the training grid.

    Attributes:
        path: Slide file.
        slide_mpp: Level-0 mpp of the slide.
        slide_mpp_override: The mpp override from the table (None = metadata).
        scale: Level-0 pixels per training pixel (``mpp / slide_mpp``).
        origin: Level-0 ``(x, y)`` of grid pixel ``(0, 0)``.
        store: The labels at the training mpp (labelled pixels only, by tile; 255 = unlabelled).
        kind: Label kind.
        prepared: The cached preparation the store comes from (None = built in memory).
    """

    path: Path
    slide_mpp: float
    slide_mpp_override: float | None
    scale: float
    origin: tuple[float, float]
    store: TiledLabels
    kind: str = "dense"
    prepared: PreparedLabels | None = None
    class_positions: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the training grid."""
        return self.store.shape

    @property
    def labels(self) -> np.ndarray:
        """The whole (H, W) uint8 grid, made on demand (memory of the slide's area: small slides, tests)."""
        return self.store.to_array()

    def counts(self, num_classes: int) -> np.ndarray:
        """Labelled pixel count per class, (num_classes,) int64."""
        return np.asarray(self.store.counts[:num_classes], dtype=np.int64)

    def index_positions(self, max_per_class: int = 200_000, seed: int = 0) -> None:
        """Store (a random subset of) the flat positions of each class's labelled pixels.

        From the cache when the labels are cached (memory-mapped), else found tile row by tile
        row (:meth:`histoseg.labels.store.TiledLabels.class_positions`).
        """
        source = self.prepared if self.prepared is not None else self.store
        self.class_positions = source.class_positions(max_per_class, seed)


def prepare_labelled_slide(record: SlideRecord, options: GridOptions, *, cache: bool = True) -> LabelledSlide:
    """Open a slide and put its labels on the training grid at ``options.mpp``, ready for patch sampling.

    The labels are prepared by :func:`histoseg.labels.store.prepare_labels`: read from the cache
    folder when this slide, labels file and these options were prepared before (by any process),
    else built (sparse kinds without a whole-slide array) and cached.

    Args:
        record: Slide table row (with labels).
        options: The user's label options on the training grid
            (:meth:`histoseg.labels.grid.GridOptions.on_grid`).
        cache: Use the prepared-labels cache (False: build in memory, write nothing).

    Raises:
        HistosegError: unreadable slide or labels, unknown label kind, no labelled pixel.
    """
    prepared = prepare_labels(record, options, cache=cache)
    return LabelledSlide(
        path=record.slide,
        slide_mpp=prepared.slide_mpp,
        slide_mpp_override=record.mpp,
        scale=prepared.scale,
        origin=prepared.origin,
        store=prepared.store,
        kind=record.kind,
        prepared=prepared if prepared.folder is not None else None,
    )


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
        return item.store.window(row, col, size, size)

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
        row, col = divmod(flat, item.shape[1])
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
            h, w = item.shape
            rows = range(0, max(h - size, 0) + 1, size) if h >= size else [-((size - h) // 2)]
            cols = range(0, max(w - size, 0) + 1, size) if w >= size else [-((size - w) // 2)]
            for r in rows:
                for c in cols:
                    if item.store.any_labelled(
                        max(r, 0), max(c, 0), r + size - max(r, 0), c + size - max(c, 0)
                    ):
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
