"""Whole-slide inference: split a slide into tiles, run the model, merge the logits into a label map.

This module owns streamed slide prediction, in MONAI's Splitter / Merger terms
(``monai.inferers.SlidingWindowSplitter`` / ``AvgMerger``) with a bounded memory footprint:

- **Splitter** (:func:`plan_tiles`): tiles of ``tile x tile`` pixels on the output grid, i.e. the
  slide at the predictor's resolution (``slide.size_at_mpp(predictor.mpp)`` pixels). Tiles whose
  footprint has no tissue on a thumbnail tissue mask (:func:`histoseg.io.tissue.tissue_mask`) are not
  run; their pixels get the background class (or 255 when the model has none).
- **Merger**, two modes (docs/methods.md section 5):

  * ``blend="gaussian"`` (default, nnU-Net; Isensee et al., Nature Methods 2021): tiles every
    ``tile x (1 - overlap)`` pixels (0.5 by default), evenly spaced so the last tile ends at the
    slide edge; each tile's logits are weighted by a Gaussian importance map
    (sigma = tile / 8, max 1) and summed; the sum is divided by the summed weights.
  * ``blend="crop"``: tiles every ``tile - 2 margin`` pixels, starting ``margin`` pixels before the
    slide (reads outside the slide are white glass); each tile contributes only its centre
    (its outer ``margin`` pixels are discarded), so every output pixel comes from exactly one
    tile with at least ``margin`` pixels of context on every side.

- **Memory**: never a slide-sized float array. Tiles are processed in row-major order; the
  Gaussian merger keeps float accumulators for one band of rows, ``(C + 1) x tile x W`` float32
  (W = label-map width), and as soon as no later tile can touch a row, the row is finished:
  argmax into a uint8 file on disk (a temporary file beside the output), softmax summed into the
  per-class *expected* pixel counts, argmax pixels counted. The crop merger keeps only a uint8 strip
  of ``(tile - 2 margin) x W``. Peak memory therefore grows with the slide *width* times the tile,
  never with its area; the label map itself lives on disk. Tiles are read one batch ahead in a
  background thread.
- **Output**: the uint8 label map written as a tiled pyramidal TIFF (nearest-neighbour levels,
  class colour table, mpp in the resolution tags, class names in the description) with
  :func:`histoseg.io.tiff.write_pyramid_tiff`, atomically; the temporary file is removed.

Example:
    >>> from histoseg.inference.predict import predict_slide
    >>> result = predict_slide("slide.svs", predictor, out_path="out/slide.labels.tif")  # doctest: +SKIP
    >>> result.counts, result.mpp  # doctest: +SKIP
    (array([...]), 2.0)
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from histoseg.errors import HistosegError
from histoseg.inference.forward import TileRunner
from histoseg.inference.merge import CropMerger, GaussianMerger, Stats
from histoseg.inference.options import InferenceOptions
from histoseg.inference.predictor import Predictor
from histoseg.inference.reader import iter_batches, plan_reads
from histoseg.inference.writer import BackgroundTiff, LabelSink
from histoseg.io.progress import tile_bar
from histoseg.io.slide import Slide
from histoseg.io.tissue import tissue_mask
from histoseg.report.areas import class_areas, interstitial_fraction

__all__ = [
    "SlidePrediction",
    "Tile",
    "gaussian_importance_map",
    "plan_tiles",
    "predict_slide",
]

Blend = Literal["gaussian", "crop"]


# -- splitter -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One inference tile on the output grid (pixels at the predictor's mpp).

    Attributes:
        x: Left edge of the tile (may be negative or run past the slide: read as white glass).
        y: Top edge of the tile.
        own: ``(x0, y0, x1, y1)`` output pixels this tile decides alone (crop mode), or the part of
            the tile inside the slide (gaussian mode, where tiles share pixels).
        row: Index of the tile row (tiles are in row-major order).
    """

    x: int
    y: int
    own: tuple[int, int, int, int]
    row: int


def _gaussian_starts(length: int, tile: int, step: int) -> list[int]:
    """nnU-Net step placement: evenly spaced starts from 0 to ``length - tile`` with step <= ``step``."""
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def plan_tiles(
    height: int,
    width: int,
    tile: int,
    *,
    blend: Blend = "gaussian",
    overlap: float = 0.5,
    margin: int = 0,
) -> list[Tile]:
    """Tile grid covering an ``height x width`` output grid, in row-major order.

    Args:
        height: Output (label-map) height in pixels.
        width: Output width in pixels.
        tile: Tile side in pixels.
        blend: ``"gaussian"`` (tiles every ``round(tile * (1 - overlap))`` pixels at most, inside
            the slide when it is larger than a tile) or ``"crop"`` (tiles every ``tile - 2 margin``
            pixels starting at ``-margin``; each owns its centre).
        overlap: Fraction of a tile shared with its neighbour (gaussian mode), in [0, 1).
        margin: Pixels discarded at each tile edge (crop mode).

    Returns:
        The tiles; ``own`` boxes of crop tiles partition the grid.
    """
    if blend == "gaussian":
        step = max(1, round(tile * (1.0 - overlap)))
        ys = _gaussian_starts(height, tile, step)
        xs = _gaussian_starts(width, tile, step)
        return [
            Tile(x, y, (x, y, min(x + tile, width), min(y + tile, height)), row)
            for row, y in enumerate(ys)
            for x in xs
        ]
    step = tile - 2 * margin
    tiles = []
    for row, oy in enumerate(range(0, height, step)):
        for ox in range(0, width, step):
            tiles.append(
                Tile(ox - margin, oy - margin, (ox, oy, min(ox + step, width), min(oy + step, height)), row)
            )
    return tiles


def gaussian_importance_map(tile: int, sigma_scale: float = 1.0 / 8.0) -> np.ndarray:
    """nnU-Net's Gaussian importance map: a (tile, tile) float32 Gaussian, max 1, never 0.

    ``w(i, j) = exp(-((i + 0.5 - tile/2)^2 + (j + 0.5 - tile/2)^2) / (2 sigma^2))`` with
    ``sigma = tile * sigma_scale``; values are clipped below at 1e-6 so every pixel a tile covers
    gets a positive weight (nnU-Net replaces zeros by the smallest positive value).
    """
    sigma = max(tile * sigma_scale, 1e-3)
    centre = (np.arange(tile, dtype=np.float64) + 0.5) - tile / 2.0
    profile = np.exp(-(centre**2) / (2.0 * sigma**2))
    weights = np.outer(profile, profile)
    weights /= weights.max()
    return np.maximum(weights, 1e-6).astype(np.float32)


# -- result -------------------------------------------------------------------------------------


@dataclass
class SlidePrediction:
    """What :func:`predict_slide` returns: where the label map is and what it contains.

    Attributes:
        slide_path: Source slide file.
        classes: Class names (label values 0..C-1; 255 = unlabelled).
        mpp: Resolution of the label map (microns per pixel) = the predictor's mpp.
        slide_mpp: Level-0 mpp of the source slide.
        mpp_source: Where ``slide_mpp`` came from (``metadata``, ``tiff-resolution``, ``override``).
        shape: Label map ``(height, width)`` in pixels.
        slide_dimensions: Source slide level-0 ``(width, height)``.
        counts: (C,) int64 argmax pixel counts per class.
        unlabelled_pixels: Pixels set to 255 (glass when the model has no background class).
        expected_counts: (C,) float64 sums of softmax probabilities (skipped glass counts as background).
        labels_path: The label-map TIFF, when ``out_path`` was given.
        labels: (H, W) uint8 memory map of the label map when no ``out_path`` was given, else None.
        tiles_total: Tiles in the grid.
        tiles_run: Tiles run through the model (the others were glass).
        nonfinite_tiles: Of those, tiles whose merged scores held NaN or infinite values (a
            diverged model): counted on what the merger used, so once per tile.
        thumbnail: The (h, w, 3) uint8 thumbnail used for the tissue mask.
        thumbnail_downsample: Level-0 pixels per thumbnail pixel.
        tissue: (h, w) bool tissue mask of the thumbnail.
        seconds: Wall time.
        checkpoint_sha256: Copied from the predictor.
        precision: Precision the network ran at (``32``, ``bf16`` or ``16``; ``auto`` resolved).
        channels_last: Whether the channels-last memory format was used.
        precision_check: The ``auto`` agreement check made on this slide's first tiles
            (:meth:`histoseg.inference.forward.PrecisionCheck.as_dict`), or None.
        view_counts: With TTA, (8, C) int64 argmax pixel counts of each dihedral view alone
            (view ``2 k + flip``); None without TTA.
        timings: Seconds per stage in the main process: ``read_wait`` (waiting for tiles),
            ``forward``, ``merge`` (blending, argmax, counts, band written), ``write_wait`` (waiting
            for the TIFF thread after the last band). On a GPU the host queues work ahead and
            waits only when a band's labels are copied back, so ``forward`` is the time to queue
            the network and the GPU's compute shows up in ``merge``.
    """

    slide_path: Path
    classes: list[str]
    mpp: float
    slide_mpp: float
    mpp_source: str
    shape: tuple[int, int]
    slide_dimensions: tuple[int, int]
    counts: np.ndarray
    unlabelled_pixels: int
    expected_counts: np.ndarray
    labels_path: Path | None = None
    labels: np.ndarray | None = None
    tiles_total: int = 0
    tiles_run: int = 0
    nonfinite_tiles: int = 0
    thumbnail: np.ndarray | None = field(default=None, repr=False)
    thumbnail_downsample: float = 1.0
    tissue: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0
    checkpoint_sha256: str = ""
    precision: str = "32"
    channels_last: bool = False
    precision_check: dict[str, Any] | None = None
    view_counts: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def areas(self, background: str | int | None = "background") -> list[dict[str, Any]]:
        """Per-class area rows (:func:`histoseg.report.areas.class_areas`) at the label map's mpp."""
        return class_areas(self.counts, self.mpp, self.classes, background, self.expected_counts)

    def uncertainty(self) -> dict[str, Any]:
        """Expected-area interstitial fraction and, with TTA, its min/max over the 8 views.

        Returns:
            ``expected_interstitial_fraction`` (from the softmax-summed expected counts),
            ``tta_fraction_min`` / ``tta_fraction_max`` (smallest / largest interstitial fraction
            of the 8 dihedral views' own label maps; NaN without TTA) and ``tta_view_fractions``
            (all 8, view ``2 k + flip``; None without TTA).
        """
        views = (
            [interstitial_fraction(c, self.classes) for c in self.view_counts]
            if self.view_counts is not None
            else []
        )
        finite = [v for v in views if math.isfinite(v)]
        return {
            "expected_interstitial_fraction": interstitial_fraction(self.expected_counts, self.classes),
            "tta_fraction_min": min(finite) if finite else math.nan,
            "tta_fraction_max": max(finite) if finite else math.nan,
            "tta_view_fractions": views or None,
        }


# -- prediction ---------------------------------------------------------------------------------


def _tissue_tiles(tiles: Sequence[Tile], tissue: np.ndarray, scale: float, use_own: bool) -> list[Tile]:
    """Tiles whose footprint (``own`` box in crop mode, whole tile otherwise) touches tissue.

    ``scale`` = thumbnail pixels per output pixel. The mask is dilated by one pixel first so that
    thumbnail rounding never drops a tile on the tissue edge.
    """
    from scipy import ndimage

    mask = ndimage.binary_dilation(tissue, iterations=1)
    # Summed-area table: any tissue in a box in O(1).
    sat = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    th, tw = mask.shape
    keep = []
    for tile in tiles:
        x0, y0, x1, y1 = tile.own
        if not use_own:
            x0, y0 = tile.x, tile.y
        bx0 = min(max(int(math.floor(x0 * scale)), 0), tw)
        by0 = min(max(int(math.floor(y0 * scale)), 0), th)
        bx1 = min(max(int(math.ceil(x1 * scale)), bx0 + 1), tw)
        by1 = min(max(int(math.ceil(y1 * scale)), by0 + 1), th)
        if bx1 <= bx0 or by1 <= by0:
            continue
        if sat[by1, bx1] - sat[by0, bx1] - sat[by1, bx0] + sat[by0, bx0] > 0:
            keep.append(tile)
    return keep


def predict_slide(
    slide: Slide | str | os.PathLike[str],
    predictor: Predictor,
    options: InferenceOptions | None = None,
    *,
    out_path: str | os.PathLike[str] | None = None,
    mpp: float | None = None,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> SlidePrediction:
    """Predict the label map of a whole slide at the predictor's resolution, streaming.

    Args:
        slide: An open :class:`~histoseg.io.slide.Slide` or a slide path.
        predictor: Model and its facts (classes, mpp, tile geometry, background class).
        options: Tiling, merging, device, precision and TTA settings
            (:class:`~histoseg.inference.options.InferenceOptions`; default: all defaults).
            Resolved against ``predictor`` here unless already resolved.
        out_path: Where to write the label map as a tiled pyramidal TIFF (atomically). When None,
            the result holds ``labels``, a memory map of a temporary file (deleted on close).
        mpp: Level-0 mpp of the slide, overriding its metadata (only used when ``slide`` is a path).
        progress: Show a progress bar on stderr (only when it is a terminal).
        on_progress: Called as ``on_progress(tiles_done, tiles_to_run)`` after each batch.

    Returns:
        A :class:`SlidePrediction`.

    Raises:
        HistosegError: unreadable slide, invalid option, or a model output of the wrong shape.
    """
    start = time.perf_counter()
    options = options if options is not None else InferenceOptions()
    if not options.resolved:
        options = options.resolve(predictor)
    own_slide = not isinstance(slide, Slide)
    handle = slide if isinstance(slide, Slide) else Slide(slide, mpp=mpp)
    assert isinstance(handle, Slide)
    try:
        return _predict(
            handle,
            predictor,
            options,
            out_path=Path(out_path) if out_path is not None else None,
            progress=progress,
            on_progress=on_progress,
            start=start,
        )
    finally:
        if own_slide:
            handle.close()


def _predict(
    slide: Slide,
    predictor: Predictor,
    options: InferenceOptions,
    *,
    out_path: Path | None,
    progress: bool,
    on_progress: Callable[[int, int], None] | None,
    start: float,
) -> SlidePrediction:
    assert options.tile_size is not None and options.margin is not None
    tile, margin_px, blend, batch_size = options.tile_size, options.margin, options.blend, options.batch_size
    device = options.torch_device
    num_classes = len(predictor.classes)
    background, fill = _background_and_fill(predictor)
    out_mpp = float(predictor.mpp)
    width, height = slide.size_at_mpp(out_mpp)
    scale0 = out_mpp / slide.mpp  # level-0 pixels per output pixel

    tiles = plan_tiles(height, width, tile, blend=blend, overlap=options.overlap, margin=margin_px)  # type: ignore[arg-type]
    to_run, thumb, thumb_ds, tissue = _tiles_to_run(slide, tiles, options, scale0)
    sink, raw_path = _open_sink(out_path, height, width)
    runner, merger, stats = _model_and_merger(predictor, options, sink, fill, background)
    advance, stop_bar = tile_bar(progress, len(to_run), slide.path.name)
    labels_memmap: np.ndarray | None = None
    plan = plan_reads(slide, to_run, tile, scale0, out_mpp)
    batches = iter_batches(slide, plan, batch_size, workers=options.workers, pin_memory=device.type == "cuda")
    tiff = BackgroundTiff(out_path, sink, out_mpp, predictor, slide) if out_path is not None else None
    timings: dict[str, float] = {}
    nonfinite = 0
    try:
        timings, nonfinite = _run_tiles(batches, runner, merger, advance, on_progress, len(to_run))
        stop_bar()
        labels_path = None
        if tiff is not None:
            wait = time.perf_counter()
            tiff.result()
            tiff = None
            timings["write_wait"] = time.perf_counter() - wait
            labels_path = out_path
        else:
            labels_memmap = np.memmap(raw_path, dtype=np.uint8, mode="r", shape=(height, width))
    finally:
        batches.close()  # stops the readers (a read in flight ends) before the slide can be closed
        if tiff is not None:
            tiff.cancel()  # no label TIFF and no temporary file after a failure
        stop_bar()
        sink.close()
        with contextlib.suppress(OSError):
            raw_path.unlink()  # a memory map of it (no out_path) stays valid until dropped
    counts = stats.counts
    return SlidePrediction(
        slide_path=slide.path,
        classes=list(predictor.classes),
        mpp=out_mpp,
        slide_mpp=float(slide.mpp),
        mpp_source=str(slide.mpp_source),
        shape=(height, width),
        slide_dimensions=tuple(slide.dimensions),  # type: ignore[arg-type]
        counts=counts[:num_classes].copy(),
        unlabelled_pixels=int(counts[255]) if num_classes < 255 else 0,
        expected_counts=stats.expected.copy(),
        labels_path=labels_path,
        labels=labels_memmap,
        tiles_total=len(tiles),
        tiles_run=len(to_run),
        nonfinite_tiles=nonfinite,
        thumbnail=thumb,
        thumbnail_downsample=float(thumb_ds),
        tissue=tissue,
        seconds=time.perf_counter() - start,
        checkpoint_sha256=predictor.checkpoint_sha256,
        precision=runner.precision if runner.precision != "auto" else "32",
        channels_last=runner.channels_last if runner.precision != "auto" else False,
        precision_check=runner.check.as_dict() if runner.check is not None else None,
        view_counts=stats.view_counts[:, :num_classes].copy() if options.tta else None,
        timings=timings,
    )


def _background_and_fill(predictor: Predictor) -> tuple[int | None, int]:
    """The model's background class (None when absent or out of range) and the label of unrun tiles."""
    background = predictor.background_class
    if background is not None and not 0 <= background < len(predictor.classes):
        background = None
    return background, 255 if background is None else int(background)


def _tiles_to_run(
    slide: Slide, tiles: Sequence[Tile], options: InferenceOptions, scale0: float
) -> tuple[list[Tile], np.ndarray, float, np.ndarray]:
    """The tiles to run (on tissue with ``skip_glass``), the thumbnail, its downsample and tissue mask."""
    thumb, thumb_ds = slide.thumbnail(1024)
    tissue = tissue_mask(thumb)
    to_run = (
        _tissue_tiles(tiles, tissue, scale0 / thumb_ds, use_own=options.blend == "crop")
        if options.skip_glass
        else list(tiles)
    )
    return to_run, thumb, thumb_ds, tissue


def _open_sink(out_path: Path | None, height: int, width: int) -> tuple[LabelSink, Path]:
    """The band-by-band label sink and its raw file: hidden next to ``out_path``, else a temporary file.

    Raises:
        HistosegError: the folder cannot hold the temporary label map.
    """
    if out_path is not None:
        folder = out_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        raw_path = folder / f".{out_path.name}.{os.getpid()}-{threading.get_ident()}.raw"
    else:
        fd, name = tempfile.mkstemp(prefix="histoseg-labels-", suffix=".raw")
        os.close(fd)
        raw_path = Path(name)
    try:
        return LabelSink(raw_path, height, width), raw_path
    except OSError as exc:
        raise HistosegError(
            f"{raw_path.parent}: cannot write the temporary label map ({exc.strerror})"
        ) from None


def _model_and_merger(
    predictor: Predictor, options: InferenceOptions, sink: LabelSink, fill: int, background: int | None
) -> tuple[TileRunner, GaussianMerger | CropMerger, Stats]:
    """The tile runner (precision, TTA) and the merger of ``options.blend`` on the model's device."""
    assert options.tile_size is not None and options.margin is not None
    device, classes, tile = options.torch_device, len(predictor.classes), options.tile_size
    runner = TileRunner(
        predictor.model, classes, device, options.precision, options.channels_last, options.tta
    )
    stats = Stats(classes, fill, background, device, probabilities=options.tta, views=8 if options.tta else 0)
    merger: GaussianMerger | CropMerger
    if options.blend == "gaussian":
        merger = GaussianMerger(sink, classes, tile, stats, gaussian_importance_map(tile))
    else:
        merger = CropMerger(sink, tile - 2 * options.margin, stats)
    return runner, merger, stats


def _nonfinite_tiles(scores: torch.Tensor) -> int:
    """Tiles of a (B, C, T, T) batch holding a NaN or an infinite score.

    A float32 sum is one cheap pass and is non-finite whenever a value is (NaN and inf propagate;
    +inf with -inf gives NaN): the batch's sum first, then, only when it is not finite, one sum per
    tile; only tiles whose sum is non-finite, which also happens when huge finite scores overflow,
    are checked value by value.
    """
    if bool(torch.isfinite(scores.sum())):  # one contiguous reduction for the usual all-finite batch
        return 0
    suspect = torch.nonzero(~torch.isfinite(scores.sum(dim=tuple(range(1, scores.dim()))))).flatten()
    return sum(int(not bool(torch.isfinite(scores[i]).all())) for i in suspect.tolist())


class _NonfiniteTiles:
    """Counts tiles holding a NaN or an infinite score, batch by batch.

    On the CPU, :func:`_nonfinite_tiles` (one sum, and value-by-value checks only when it is not
    finite). On an accelerator the count stays on the device (one ``isfinite`` pass and a per-tile
    ``any``, as exact) and is read once at the end: a host read per batch would make the host wait
    for every forward before it can queue the merge and the next batch, and leave the GPU idle
    in between.

    Args:
        device: The scores' device.
        deferred: Count on the device (None: on every device but the CPU).
    """

    def __init__(self, device: torch.device, deferred: bool | None = None) -> None:
        self.deferred = device.type != "cpu" if deferred is None else deferred
        self._count: int | torch.Tensor = (
            torch.zeros((), dtype=torch.int64, device=device) if self.deferred else 0
        )

    def add(self, scores: torch.Tensor) -> None:
        """Count the bad tiles of a (B, C, T, T) batch."""
        if self.deferred:
            self._count += torch.isfinite(scores).logical_not_().flatten(1).any(dim=1).sum()
        else:
            self._count += _nonfinite_tiles(scores)

    @property
    def count(self) -> int:
        """Bad tiles so far (reads the device counter)."""
        return int(self._count)


def _run_tiles(
    batches: Iterator[tuple[list[Tile], torch.Tensor]],
    runner: TileRunner,
    merger: GaussianMerger | CropMerger,
    advance: Callable[[int], None],
    on_progress: Callable[[int, int], None] | None,
    total: int,
) -> tuple[dict[str, float], int]:
    """Run every batch through the model and the merger.

    Returns:
        Seconds spent waiting for tiles, in the model and merging; and the number of tiles whose
        scores held NaN or infinite values.
    """
    timings = {"read_wait": 0.0, "forward": 0.0, "merge": 0.0}
    done = 0
    nonfinite = _NonfiniteTiles(runner.device)
    merged = time.perf_counter()
    for batch, images in batches:
        read = time.perf_counter()
        timings["read_wait"] += read - merged
        scores, view_labels = runner(images)
        forwarded = time.perf_counter()
        timings["forward"] += forwarded - read
        nonfinite.add(scores)
        for index, item in enumerate(batch):
            merger.add(scores[index], item, None if view_labels is None else view_labels[index])
        done += len(batch)
        advance(len(batch))
        if on_progress is not None:
            on_progress(done, total)
        merged = time.perf_counter()
        timings["merge"] += merged - forwarded
    clock = merged
    merger.finish()
    timings["merge"] += time.perf_counter() - clock
    return timings, nonfinite.count
