"""Tile reading for slide inference: tiles read ahead of the model, in order, by a pool of workers.

The tiles to run (row-major, from :func:`histoseg.inference.predict.plan_tiles`) are grouped into
*chunks*: runs of at most :data:`CHUNK_TILES` tiles of one tile row. A chunk is the unit of work
of a reader:

- **Window reads.** When the slide has a pyramid level at the model's resolution and every tile
  origin falls on a whole pixel of that level (the usual case: a 0.25 um/px scan read at 1 um/px
  on level 2, or a slide already at the model's mpp), a chunk of horizontally touching tiles is
  read as ONE window of ``tile`` rows and the tiles are views into it. With overlap 0.5 this decodes
  each slide pixel about twice instead of four times and makes one read call per chunk instead
  of one per tile. The pixels are exactly those of per-tile reads (same level, same origin), so the
  label map is byte-identical.
- **Per-tile reads** otherwise (resampling from a finer level: :meth:`Slide.read_at_mpp` per tile).

``workers=0`` reads chunks in one background thread of the main process, one chunk ahead.
``workers=N`` uses a :class:`torch.utils.data.DataLoader` of N processes, each opening its own
slide handle by path (:meth:`Slide.reopen`; OpenSlide/TIFF handles are never shared across
processes), ``prefetch_factor`` chunks ahead each; the loader yields chunks in order, so tiles
reach the model in the same order with any N. A read failure in a worker is returned as its
one-line message and raised in the main process as :class:`~histoseg.errors.SlideError`; the
workers are shut down when iteration ends, fails or is abandoned.

Batches of ``batch_size`` tiles are assembled from consecutive chunks (across tile rows), as
(N, T, T, 3) uint8 torch tensors, in pinned memory when ``pin_memory`` (CUDA).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from histoseg.errors import HistosegError, SlideError
from histoseg.io.slide import Slide

__all__ = ["CHUNK_TILES", "ReadPlan", "iter_batches", "plan_reads"]

CHUNK_TILES = 16
"""Most tiles in one chunk (one read job): 16 tiles of 512 px RGB = 12 MB."""


@dataclass(frozen=True)
class ReadPlan:
    """How the tiles of one slide are read.

    Attributes:
        chunks: Tiles (objects with ``x``, ``y`` output-pixel origins) grouped into read jobs, in order.
        tile: Tile side in output pixels.
        scale0: Level-0 pixels per output pixel.
        mpp: Output resolution (microns per pixel).
        level: Pyramid level read directly in window mode, or -1 (per-tile resampled reads).
        offset: ``(dx, dy)`` level pixel of output pixel (0, 0) in window mode.
        downsample: Integer level downsample in window mode.
    """

    chunks: list[Sequence[Any]]
    tile: int
    scale0: float
    mpp: float
    level: int = -1
    offset: tuple[int, int] = (0, 0)
    downsample: int = 1


def _window_level(slide: Slide, starts_x: set[int], starts_y: set[int], scale0: float, mpp: float) -> tuple:
    """``(level, dx, dy, ds)`` when tiles can be cut from windows of one level exactly, else ``(-1, ...)``.

    Exact means: the level is at the output mpp within the 1 % that :meth:`Slide.read_at_mpp` reads
    directly, its downsample is an integer, and every tile's level-0 origin ``round(x * scale0)`` is a
    multiple of it, with the same level-pixel offset from the output pixel for every tile.
    """
    level = slide.best_level_for_mpp(mpp)
    if abs(slide.level_mpp(level) - mpp) > 0.01 * mpp:
        return -1, 0, 0, 1
    ds_f = slide.level_downsamples[level]
    ds = int(round(ds_f))
    if ds < 1 or abs(ds_f - ds) > 1e-9:
        return -1, 0, 0, 1
    offsets = []
    for starts in (starts_x, starts_y):
        found = set()
        for start in starts:
            origin0 = int(round(start * scale0))
            if origin0 % ds:
                return -1, 0, 0, 1
            found.add(origin0 // ds - start)
        if len(found) > 1:
            return -1, 0, 0, 1
        offsets.append(found.pop() if found else 0)
    return level, offsets[0], offsets[1], ds


def plan_reads(slide: Slide, tiles: Sequence[Any], tile: int, scale0: float, mpp: float) -> ReadPlan:
    """Group ``tiles`` (row-major) into chunks and choose window or per-tile reads.

    A chunk holds consecutive tiles of one row, at most :data:`CHUNK_TILES`, and in window mode
    only tiles that touch or overlap the previous one (a skipped glass tile starts a new chunk).
    """
    level, dx, dy, ds = _window_level(slide, {t.x for t in tiles}, {t.y for t in tiles}, scale0, mpp)
    chunks: list[list[Any]] = []
    for item in tiles:
        last = chunks[-1] if chunks else None
        if (
            last is not None
            and len(last) < CHUNK_TILES
            and last[-1].y == item.y
            and (level < 0 or item.x <= last[-1].x + tile)
        ):
            last.append(item)
        else:
            chunks.append([item])
    return ReadPlan(chunks, tile, scale0, mpp, level, (dx, dy), ds)


def read_chunk(slide: Slide, plan: ReadPlan, index: int) -> np.ndarray:
    """Read chunk ``index`` of ``plan`` as (n, T, T, 3) uint8."""
    chunk = plan.chunks[index]
    tile = plan.tile
    if plan.level < 0:
        images = np.empty((len(chunk), tile, tile, 3), np.uint8)
        for i, item in enumerate(chunk):
            x0 = int(round(item.x * plan.scale0))
            y0 = int(round(item.y * plan.scale0))
            images[i] = slide.read_at_mpp(x0, y0, tile, tile, plan.mpp)
        return images
    left, top = chunk[0].x, chunk[0].y
    width = chunk[-1].x + tile - left
    dx, dy = plan.offset
    ds = plan.downsample
    window = slide.read_region((left + dx) * ds, (top + dy) * ds, width, tile, plan.level)
    # (n, T, T, 3) views into the window, copied once into one contiguous array.
    return np.stack([window[:, item.x - left : item.x - left + tile] for item in chunk])


class _ChunkDataset(torch.utils.data.Dataset):
    """Chunks of a :class:`ReadPlan` as a map-style dataset; each worker process opens its own slide."""

    def __init__(self, slide: Slide, plan: ReadPlan) -> None:
        self.path, self.mpp_override = slide.path, slide.mpp
        self.plan = plan
        self._slide: Slide | None = None

    def __len__(self) -> int:
        return len(self.plan.chunks)

    def __getitem__(self, index: int) -> np.ndarray | str:
        try:
            if self._slide is None:
                self._slide = Slide(self.path, mpp=self.mpp_override)
            return read_chunk(self._slide, self.plan, index)
        except HistosegError as exc:
            return str(exc).splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - surfaced in the main process as one line
            return f"{self.path}: cannot read tiles ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"


def _identity(item: Any) -> Any:
    return item


def _chunks_in_processes(slide: Slide, plan: ReadPlan, workers: int) -> Iterator[np.ndarray]:
    loader = torch.utils.data.DataLoader(
        _ChunkDataset(slide, plan),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        prefetch_factor=2,
        collate_fn=_identity,
        pin_memory=False,
        persistent_workers=False,
    )
    iterator = iter(loader)
    try:
        for item in iterator:
            if isinstance(item, str):
                raise SlideError(item)
            yield item
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def _chunks_in_thread(slide: Slide, plan: ReadPlan) -> Iterator[np.ndarray]:
    """Read chunks in one background thread, one chunk ahead (the slide handle is used by it only)."""
    results: queue.Queue[tuple[np.ndarray | None, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def run() -> None:
        for index in range(len(plan.chunks)):
            if stop.is_set():
                return
            try:
                item: tuple[np.ndarray | None, BaseException | None] = (read_chunk(slide, plan, index), None)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                item = (None, exc)
            while not stop.is_set():
                try:
                    results.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[1] is not None:
                return

    thread = threading.Thread(target=run, name="histoseg-read", daemon=True)
    thread.start()
    try:
        for _ in range(len(plan.chunks)):
            images, error = results.get()
            if error is not None:
                raise error
            yield images  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()  # a read in flight ends before the caller may close the slide


def iter_batches(
    slide: Slide,
    plan: ReadPlan,
    batch_size: int,
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[list[Any], torch.Tensor]]:
    """Yield ``(tiles, images)`` in tile order: up to ``batch_size`` tiles, (n, T, T, 3) uint8 tensor.

    Args:
        slide: The open slide (read by the main process's thread when ``workers == 0``; workers
            open their own handle on ``slide.path``).
        plan: From :func:`plan_reads`.
        batch_size: Tiles per batch.
        workers: Reader processes (0 = one background thread).
        pin_memory: Put batches in page-locked memory (for non-blocking copies to a GPU).

    Raises:
        SlideError: a tile region could not be read (one line, whichever process read it).
    """
    if workers < 0:
        raise HistosegError(f"workers={workers}: must be 0 (read in the main process) or more")
    if not plan.chunks:
        return
    chunks = _chunks_in_processes(slide, plan, workers) if workers > 0 else _chunks_in_thread(slide, plan)
    pending_tiles: list[Any] = []
    pending: list[np.ndarray] = []
    queued = 0
    try:
        for chunk_tiles, images in zip(plan.chunks, chunks, strict=False):
            pending_tiles.extend(chunk_tiles)
            pending.append(images)
            queued += len(chunk_tiles)
            while queued >= batch_size:
                yield _take(pending_tiles, pending, batch_size, pin_memory)
                queued -= batch_size
        while queued > 0:
            n = min(batch_size, queued)
            yield _take(pending_tiles, pending, n, pin_memory)
            queued -= n
    finally:
        chunks.close()


def _take(tiles: list[Any], arrays: list[np.ndarray], n: int, pin: bool) -> tuple[list[Any], torch.Tensor]:
    """Pop the first ``n`` tiles and their images (as one tensor) from the pending lists."""
    taken_tiles = tiles[:n]
    del tiles[:n]
    parts, count = [], 0
    while count < n:
        head = arrays[0]
        need = n - count
        if len(head) <= need:
            parts.append(head)
            arrays.pop(0)
            count += len(head)
        else:
            parts.append(head[:need])
            arrays[0] = head[need:]
            count = n
    images = torch.from_numpy(parts[0] if len(parts) == 1 else np.concatenate(parts))
    if pin:
        images = images.pin_memory()
    return taken_tiles, images
