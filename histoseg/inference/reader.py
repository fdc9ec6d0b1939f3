"""Tile reading for slide inference: tiles read ahead of the model, in order, by a pool of workers.

The tiles to run (row-major, from :func:`histoseg.inference.predict.plan_tiles`) are read by
*jobs*, the unit of work of a reader:

- **Band reads.** When the slide has a pyramid level at the model's resolution and every tile
  origin falls on a whole pixel of that level (the usual case: a 0.25 um/px scan read at 1 um/px
  on level 2, or a slide already at the model's mpp), the level is read in horizontal *bands*
  whose rows start on multiples of the file's stored tile height (:meth:`Slide.stored_tile_height`),
  so every stored (JPEG) tile is decoded once, however much the tiles overlap. A job is one
  *piece* of a band: the columns of at most :data:`PIECE_WIDTH` pixels that its tiles need (glass
  between tissue is not read). Tiles are cut from the pieces in the main process; the pixels are
  exactly those of per-tile reads (same level, same origin), so the label map is byte-identical.
  With overlap 0.5 this decodes each slide pixel once instead of about three times.
- **Per-tile reads** otherwise (resampling from a finer level: :meth:`Slide.read_at_mpp` per
  tile), in jobs of at most :data:`CHUNK_TILES` tiles of one tile row.

``workers=0`` reads jobs in one background thread of the main process, a few jobs ahead.
``workers=N`` uses a :class:`torch.utils.data.DataLoader` of N processes, each opening its own
slide handle by path (OpenSlide/TIFF handles are never shared across processes),
``prefetch_factor`` jobs ahead each; the loader yields jobs in order, so tiles reach the model in
the same order with any N. A read failure in a worker is returned as its one-line message and
raised in the main process as :class:`~histoseg.errors.SlideError`; the workers are shut down
when iteration ends, fails or is abandoned.

Memory: the main process holds the pieces of the bands the current tile row touches (about
``tile + band`` rows of the tiles' width, uint8 RGB), never the slide. Batches of ``batch_size``
tiles are (N, T, T, 3) uint8 torch tensors, in pinned memory when ``pin_memory`` (CUDA).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from histoseg.errors import HistosegError, SlideError
from histoseg.io.slide import Slide

__all__ = ["CHUNK_TILES", "PIECE_WIDTH", "Piece", "ReadPlan", "iter_batches", "plan_reads", "read_job"]

CHUNK_TILES = 16
"""Most tiles in one per-tile read job: 16 tiles of 512 px RGB = 12 MB."""

PIECE_WIDTH = 4096
"""Widest band piece read as one job, in pixels (256 rows of RGB: 3 MB)."""

MIN_BAND_ROWS = 256
"""Bands are the stored tile height times the smallest whole factor reaching this many rows."""

READ_AHEAD = 4
"""Jobs the background thread (``workers=0``) reads ahead of the model."""


@dataclass(frozen=True)
class Piece:
    """One band-read job: output rows ``[y0, y0 + rows)`` and columns ``[x0, x1)`` of the level."""

    y0: int
    rows: int
    x0: int
    x1: int


@dataclass(frozen=True)
class ReadPlan:
    """How the tiles of one slide are read.

    Attributes:
        tiles: The tiles (objects with ``x``, ``y`` output-pixel origins), in the order they are
            yielded.
        jobs: Read jobs in order: :class:`Piece` (band reads) or lists of tiles (per-tile reads).
        sources: For each tile, the jobs it is cut from: the pieces top to bottom (band reads), or
            ``(job, position in the job)`` (per-tile reads).
        tile: Tile side in output pixels.
        scale0: Level-0 pixels per output pixel.
        mpp: Output resolution (microns per pixel).
        level: Pyramid level read directly in band mode, or -1 (per-tile resampled reads).
        offset: ``(dx, dy)`` level pixel of output pixel (0, 0) in band mode.
        downsample: Integer level downsample in band mode.
        band: Band height in level rows (band mode).
    """

    tiles: list[Any]
    jobs: list[Any]
    sources: list[tuple[int, ...]]
    tile: int
    scale0: float
    mpp: float
    level: int = -1
    offset: tuple[int, int] = (0, 0)
    downsample: int = 1
    band: int = 0


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


def plan_reads(
    slide: Slide, tiles: Sequence[Any], tile: int, scale0: float, mpp: float, *, bands: bool = True
) -> ReadPlan:
    """Choose band or per-tile reads for ``tiles`` (row-major) and group them into jobs.

    Args:
        slide: The open slide.
        tiles: Tiles in row-major order (output-pixel origins ``x``, ``y``).
        tile: Tile side in output pixels.
        scale0: Level-0 pixels per output pixel.
        mpp: Output resolution.
        bands: Allow band reads (False: per-tile reads always, for tests and comparisons).
    """
    tiles = list(tiles)
    level, dx, dy, ds = (
        _window_level(slide, {t.x for t in tiles}, {t.y for t in tiles}, scale0, mpp)
        if bands
        else (-1, 0, 0, 1)
    )
    if level < 0:
        chunks: list[list[Any]] = []
        sources: list[tuple[int, ...]] = []
        for item in tiles:
            last = chunks[-1] if chunks else None
            if last is not None and len(last) < CHUNK_TILES and last[-1].y == item.y:
                last.append(item)
            else:
                chunks.append([item])
            sources.append((len(chunks) - 1, len(chunks[-1]) - 1))
        return ReadPlan(tiles, chunks, sources, tile, scale0, mpp)
    stored = slide.stored_tile_height(level)
    if stored is None or not 0 < stored <= 2048:
        stored = MIN_BAND_ROWS
    band = stored * -(-MIN_BAND_ROWS // stored)
    # Band k holds level rows [k band, (k + 1) band) = output rows [k band - dy, (k + 1) band - dy).
    spans = [((t.y + dy) // band, (t.y + dy + tile - 1) // band) for t in tiles]
    xs_of: dict[int, set[int]] = {}
    for item, (k0, k1) in zip(tiles, spans, strict=True):
        for k in range(k0, k1 + 1):
            xs_of.setdefault(k, set()).add(item.x)
    jobs: list[Piece] = []
    piece_of: dict[tuple[int, int], int] = {}
    for k in sorted(xs_of):
        start: int | None = None
        end = 0
        for x in sorted(xs_of[k]):
            if start is None or x > end or x + tile - start > PIECE_WIDTH:  # a gap, or too wide
                if start is not None:
                    jobs.append(Piece(k * band - dy, band, start, end))
                start = x
            end = x + tile if end is None or start == x else max(end, x + tile)
            piece_of[k, x] = len(jobs)
        jobs.append(Piece(k * band - dy, band, start, end))  # type: ignore[arg-type]
    sources = [
        tuple(piece_of[k, item.x] for k in range(k0, k1 + 1))
        for item, (k0, k1) in zip(tiles, spans, strict=True)
    ]
    return ReadPlan(tiles, jobs, sources, tile, scale0, mpp, level, (dx, dy), ds, band)


def read_job(slide: Slide, plan: ReadPlan, index: int) -> np.ndarray:
    """Read job ``index`` of ``plan``: a (rows, x1 - x0, 3) piece, or (n, T, T, 3) per-tile reads."""
    job = plan.jobs[index]
    if plan.level < 0:
        tile = plan.tile
        images = np.empty((len(job), tile, tile, 3), np.uint8)
        for i, item in enumerate(job):
            x0 = int(round(item.x * plan.scale0))
            y0 = int(round(item.y * plan.scale0))
            images[i] = slide.read_at_mpp(x0, y0, tile, tile, plan.mpp)
        return images
    dx, dy = plan.offset
    ds = plan.downsample
    return slide.read_region((job.x0 + dx) * ds, (job.y0 + dy) * ds, job.x1 - job.x0, job.rows, plan.level)


class _JobDataset(torch.utils.data.Dataset):
    """Jobs of a :class:`ReadPlan` as a map-style dataset; each worker process opens its own slide."""

    def __init__(self, slide: Slide, plan: ReadPlan) -> None:
        self.path, self.mpp_override = slide.path, slide.mpp
        self.plan = plan
        self._slide: Slide | None = None

    def __len__(self) -> int:
        return len(self.plan.jobs)

    def __getitem__(self, index: int) -> np.ndarray | str:
        try:
            if self._slide is None:
                self._slide = Slide(self.path, mpp=self.mpp_override)
            return read_job(self._slide, self.plan, index)
        except HistosegError as exc:
            return str(exc).splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - surfaced in the main process as one line
            return f"{self.path}: cannot read tiles ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"


def _identity(item: Any) -> Any:
    return item


def _jobs_in_processes(slide: Slide, plan: ReadPlan, workers: int) -> Generator[np.ndarray, None, None]:
    loader = torch.utils.data.DataLoader(
        _JobDataset(slide, plan),
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


def _jobs_in_thread(slide: Slide, plan: ReadPlan) -> Generator[np.ndarray, None, None]:
    """Read jobs in one background thread, :data:`READ_AHEAD` ahead (the slide handle is its alone)."""
    results: queue.Queue[tuple[np.ndarray | None, BaseException | None]] = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def run() -> None:
        for index in range(len(plan.jobs)):
            if stop.is_set():
                return
            try:
                item: tuple[np.ndarray | None, BaseException | None] = (read_job(slide, plan, index), None)
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
        for _ in range(len(plan.jobs)):
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
) -> Generator[tuple[list[Any], torch.Tensor], None, None]:
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
    if not plan.jobs:
        return
    jobs = _jobs_in_processes(slide, plan, workers) if workers > 0 else _jobs_in_thread(slide, plan)
    tile, banded = plan.tile, plan.level >= 0
    held: dict[int, np.ndarray] = {}  # received jobs still needed, by index
    received = 0
    batch: list[Any] = []
    images = np.empty((0, tile, tile, 3), np.uint8)
    row_top: int | None = None
    try:
        for item, source in zip(plan.tiles, plan.sources, strict=True):
            if banded and item.y != row_top:  # a new tile row: drop the pieces above it
                row_top = item.y
                for index in [i for i in held if plan.jobs[i].y0 + plan.jobs[i].rows <= item.y]:
                    del held[index]
            last = max(source) if banded else source[0]
            while received <= last:
                held[received] = next(jobs)
                received += 1
            if not batch:
                images = np.empty((batch_size, tile, tile, 3), np.uint8)
            out = images[len(batch)]
            if banded:
                for index in source:
                    piece, data = plan.jobs[index], held[index]
                    r0, r1 = max(item.y, piece.y0), min(item.y + tile, piece.y0 + piece.rows)
                    c0 = item.x - piece.x0
                    out[r0 - item.y : r1 - item.y] = data[r0 - piece.y0 : r1 - piece.y0, c0 : c0 + tile]
            else:
                job, position = source
                out[...] = held[job][position]
                if position == len(plan.jobs[job]) - 1:
                    del held[job]
            batch.append(item)
            if len(batch) == batch_size:
                yield batch, _tensor(images, pin_memory)
                batch = []
        if batch:
            yield batch, _tensor(images[: len(batch)], pin_memory)
    finally:
        jobs.close()


def _tensor(images: np.ndarray, pin: bool) -> torch.Tensor:
    tensor = torch.from_numpy(images)
    return tensor.pin_memory() if pin else tensor
