"""Prepared training labels stored by what was drawn, and cached on disk.

A slide's labels on the training grid (``(H, W)`` class indices, 255 = unlabelled) are kept as a
:class:`TiledLabels`: only the labelled pixels, grouped by ``TILE x TILE`` tile (per tile, the
in-tile offsets ``r * TILE + c`` as uint16 and the classes as uint8: 3 bytes per labelled pixel,
nothing for unlabelled ones). A patch's label window is assembled from the few tiles it overlaps
(:meth:`TiledLabels.window`), so memory follows the strokes drawn, not the slide's area.

Sparse label kinds are put in this store without any whole-slide array (GeoJSON scribbles: each
stroke's pixels, :func:`histoseg.labels.scribbles.scribbles_sparse`; points:
:func:`histoseg.labels.points.points_sparse`). Dense masks, scribble images and scribbles grown to
superpixels are built on the whole grid by their builder (:mod:`histoseg.labels.grid`) once, then
stored the same way.

:func:`prepare_labels` caches the store on disk under the cache folder
(``<cache>/prepared-labels/<key>/``, :mod:`histoseg.io.cache`), keyed by the content of the slide
(size and sampled bytes), of the labels file (all bytes), every option that changes the
grid and the source of the label code. The folder is built under a temporary name and renamed into place (atomic: concurrent ranks
either build the same folder and all but one rename is dropped, or reuse the first); later
ranks, restarts and reruns open it memory-mapped. The patch-centre draws of
:class:`histoseg.datasets.RandomPatchDataset` (:meth:`PreparedLabels.class_positions`) are cached
beside it, per seed.

Example:
    >>> import numpy as np
    >>> from histoseg.labels.store import TiledLabels
    >>> grid = np.full((5, 7), 255, np.uint8); grid[1, 2] = 3; grid[4, 6] = 1
    >>> store = TiledLabels.from_array(grid, tile=4)
    >>> store.window(0, 1, 3, 3).tolist()
    [[255, 255, 255], [255, 3, 255], [255, 255, 255]]
    >>> np.array_equal(store.to_array(), grid), store.counts[:4].tolist()
    (True, [0, 1, 0, 1])
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histoseg import IGNORE_INDEX
from histoseg.errors import HistosegError
from histoseg.io.cache import PREPARED_LABELS, cache_folder
from histoseg.io.files import atomic_path

if TYPE_CHECKING:
    from histoseg.labels.grid import GridOptions
    from histoseg.labels.table import SlideRecord

log = logging.getLogger(__name__)

TILE = 256
"""Side of a storage tile in training pixels (in-tile offsets fit a uint16)."""

FORMAT = 1
"""Version of the on-disk layout; part of the cache key."""


@dataclass
class TiledLabels:
    """An ``(H, W)`` uint8 label grid holding only its labelled pixels, tile by tile.

    Attributes:
        shape: ``(H, W)`` of the grid.
        tile: Tile side in pixels (at most 256).
        offsets: ``(ntiles + 1,)`` int64: the labelled pixels of tile ``t`` (row-major tile order,
            ``t = ty * ntx + tx``) are ``pos[offsets[t]:offsets[t + 1]]``.
        pos: ``(n,)`` uint16 in-tile offsets ``r * tile + c``, ascending within a tile.
        val: ``(n,)`` uint8 classes.
        counts: ``(256,)`` int64 labelled pixels per value (``counts[255] == 0``).
    """

    shape: tuple[int, int]
    tile: int
    offsets: np.ndarray
    pos: np.ndarray
    val: np.ndarray
    counts: np.ndarray

    @property
    def tiles_x(self) -> int:
        """Tiles per row."""
        return -(-self.shape[1] // self.tile)

    @property
    def tiles_y(self) -> int:
        """Tile rows."""
        return -(-self.shape[0] // self.tile)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays."""
        return int(self.offsets.nbytes + self.pos.nbytes + self.val.nbytes + self.counts.nbytes)

    # -- building ----------------------------------------------------------------------------------
    @classmethod
    def from_sparse(
        cls, shape: tuple[int, int], flat: np.ndarray, values: np.ndarray, tile: int = TILE
    ) -> TiledLabels:
        """From the labelled pixels: flat indices ``r * W + c`` (unique) and their classes."""
        if tile > 256:
            raise ValueError(f"tile {tile} > 256: in-tile offsets must fit a uint16")
        height, width = int(shape[0]), int(shape[1])
        flat = np.asarray(flat, dtype=np.int64)
        values = np.asarray(values, dtype=np.uint8)
        keep = values != IGNORE_INDEX
        flat, values = flat[keep], values[keep]
        rows, cols = np.divmod(flat, width)
        ntx = -(-width // tile)
        ntiles = -(-height // tile) * ntx
        tid = (rows // tile) * ntx + cols // tile
        pos = ((rows % tile) * tile + cols % tile).astype(np.uint16)
        order = np.lexsort((pos, tid))
        counts = np.bincount(tid, minlength=ntiles)
        offsets = np.zeros(ntiles + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(
            shape=(height, width),
            tile=tile,
            offsets=offsets,
            pos=pos[order],
            val=values[order],
            counts=np.bincount(values, minlength=256).astype(np.int64),
        )

    @classmethod
    def from_array(cls, labels: np.ndarray, tile: int = TILE) -> TiledLabels:
        """From a whole ``(H, W)`` uint8 grid, one tile row at a time.

        Beside the grid, memory is the store (3 bytes per labelled pixel) and one tile row.
        """
        if tile > 256:
            raise ValueError(f"tile {tile} > 256: in-tile offsets must fit a uint16")
        height, width = labels.shape
        ntx = -(-width // tile)
        sizes: list[int] = []
        pos: list[np.ndarray] = []
        val: list[np.ndarray] = []
        for r0 in range(0, height, tile):
            band = np.full((tile, ntx * tile), IGNORE_INDEX, np.uint8)
            block = labels[r0 : r0 + tile]
            band[: block.shape[0], :width] = block
            tiles = band.reshape(tile, ntx, tile).transpose(1, 0, 2).reshape(ntx, tile * tile)
            for tx in range(ntx):
                local = np.flatnonzero(tiles[tx] != IGNORE_INDEX)
                sizes.append(local.size)
                pos.append(local.astype(np.uint16))
                val.append(tiles[tx][local])
        offsets = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
        values = np.concatenate(val) if val else np.zeros(0, np.uint8)
        return cls(
            shape=(int(height), int(width)),
            tile=tile,
            offsets=offsets,
            pos=np.concatenate(pos) if pos else np.zeros(0, np.uint16),
            val=values,
            counts=np.bincount(values, minlength=256).astype(np.int64),
        )

    # -- reading -----------------------------------------------------------------------------------
    def window(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """Labels of rows ``row .. row + height`` and columns ``col .. col + width`` (255 outside)."""
        out = np.full((height, width), IGNORE_INDEX, np.uint8)
        t = self.tile
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + height, self.shape[0]), min(col + width, self.shape[1])
        if r1 <= r0 or c1 <= c0:
            return out
        ntx = self.tiles_x
        for ty in range(r0 // t, (r1 - 1) // t + 1):
            for tx in range(c0 // t, (c1 - 1) // t + 1):
                k = ty * ntx + tx
                a, b = int(self.offsets[k]), int(self.offsets[k + 1])
                if a == b:
                    continue
                p = np.asarray(self.pos[a:b], dtype=np.int64)
                rr = ty * t + p // t - row
                cc = tx * t + p % t - col
                inside = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
                out[rr[inside], cc[inside]] = self.val[a:b][inside]
        return out

    def any_labelled(self, row: int, col: int, height: int, width: int) -> bool:
        """Whether the window holds a labelled pixel (empty tiles are skipped without reading)."""
        t = self.tile
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + height, self.shape[0]), min(col + width, self.shape[1])
        if r1 <= r0 or c1 <= c0:
            return False
        ntx = self.tiles_x
        tys = np.arange(r0 // t, (r1 - 1) // t + 1)
        txs = np.arange(c0 // t, (c1 - 1) // t + 1)
        ks = (tys[:, None] * ntx + txs[None, :]).ravel()
        if not (self.offsets[ks + 1] > self.offsets[ks]).any():
            return False
        return bool((self.window(row, col, height, width) != IGNORE_INDEX).any())

    def to_array(self) -> np.ndarray:
        """The whole ``(H, W)`` grid (memory of the slide's area: for small grids and tests)."""
        return self.window(0, 0, *self.shape)

    def bands(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per tile row: the labelled pixels' flat indices ``r * W + c`` (ascending) and classes."""
        t, width, ntx = self.tile, self.shape[1], self.tiles_x
        for ty in range(self.tiles_y):
            a, b = int(self.offsets[ty * ntx]), int(self.offsets[(ty + 1) * ntx])
            if a == b:
                continue
            p = np.asarray(self.pos[a:b], dtype=np.int64)
            tx = np.repeat(np.arange(ntx), np.diff(self.offsets[ty * ntx : (ty + 1) * ntx + 1]))
            flat = (ty * t + p // t) * width + tx * t + p % t
            order = np.argsort(flat, kind="stable")
            yield flat[order], np.asarray(self.val[a:b])[order]

    def class_positions(self, max_per_class: int, seed: int) -> dict[int, np.ndarray]:
        """Flat positions of each class's labelled pixels, a random ``max_per_class`` when more.

        The same positions as ``np.flatnonzero(grid == c)`` subsampled with
        ``np.sort(default_rng(seed).choice(pos, max_per_class, replace=False))`` class by class in
        ascending order (the draws of the whole-grid code this replaces), found one tile row at a
        time.
        """
        rng = np.random.default_rng(seed)
        present = [c for c in range(255) if self.counts[c] > 0]
        ranks: dict[int, np.ndarray | None] = {}
        for c in present:
            n = int(self.counts[c])
            ranks[c] = np.sort(rng.choice(n, max_per_class, replace=False)) if n > max_per_class else None
        seen = dict.fromkeys(present, 0)
        parts: dict[int, list[np.ndarray]] = {c: [] for c in present}
        for flat, val in self.bands():
            for c in np.unique(val).tolist():
                sel = flat[val == c]
                wanted = ranks[c]
                if wanted is None:
                    parts[c].append(sel)
                else:
                    lo, hi = np.searchsorted(wanted, [seen[c], seen[c] + sel.size])
                    parts[c].append(sel[wanted[lo:hi] - seen[c]])
                seen[c] += sel.size
        return {c: np.concatenate(parts[c]).astype(np.int64) for c in present}

    def __getstate__(self) -> dict[str, Any]:
        """Memory-mapped arrays travel as their file (spawned DataLoader workers map them again)."""
        state = dict(self.__dict__)
        for name in ("pos", "val"):
            array = state[name]
            if isinstance(array, np.memmap) and array.filename:
                state[name] = ("npy-file", str(array.filename))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Reopen the memory-mapped arrays of :meth:`__getstate__`."""
        for name in ("pos", "val"):
            if isinstance(state[name], tuple):
                state[name] = np.load(state[name][1], mmap_mode="r")
        self.__dict__.update(state)

    # -- disk ----------------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write ``offsets.npy``, ``pos.npy``, ``val.npy`` and ``counts.npy`` into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("offsets", "pos", "val", "counts"):
            np.save(folder / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))

    @classmethod
    def load(cls, folder: Path, shape: tuple[int, int], tile: int) -> TiledLabels:
        """Open a saved store; the pixel arrays are memory-mapped (read on demand, shared by processes)."""
        return cls(
            shape=(int(shape[0]), int(shape[1])),
            tile=int(tile),
            offsets=np.load(folder / "offsets.npy"),
            pos=np.load(folder / "pos.npy", mmap_mode="r"),
            val=np.load(folder / "val.npy", mmap_mode="r"),
            counts=np.load(folder / "counts.npy"),
        )


@dataclass
class PreparedLabels:
    """A slide's prepared labels: the store, where it sits on the slide, and its cache folder.

    Attributes:
        store: The labels on the training grid.
        origin: Level-0 ``(x, y)`` of grid pixel ``(0, 0)``.
        scale: Level-0 pixels per training pixel.
        slide_mpp: Level-0 mpp of the slide.
        folder: Cache folder of this slide's labels (None = not cached).
        reused: Whether the store was read from the cache.
    """

    store: TiledLabels
    origin: tuple[float, float]
    scale: float
    slide_mpp: float
    folder: Path | None = None
    reused: bool = False

    def class_positions(self, max_per_class: int, seed: int) -> dict[int, np.ndarray]:
        """:meth:`TiledLabels.class_positions`, cached (memory-mapped) in :attr:`folder` per seed."""
        if self.folder is None:
            return self.store.class_positions(max_per_class, seed)
        path = self.folder / f"positions-seed{seed}-max{max_per_class}.npz"
        flat_path = self.folder / f"positions-seed{seed}-max{max_per_class}.npy"
        if not (path.is_file() and flat_path.is_file()):
            positions = self.store.class_positions(max_per_class, seed)
            classes = np.array(sorted(positions), np.int64)
            sizes = [positions[int(c)].size for c in classes]
            bounds = np.zeros(len(sizes) + 1, np.int64)
            np.cumsum(sizes, out=bounds[1:])
            flat = np.concatenate([positions[int(c)] for c in classes]) if sizes else np.zeros(0, np.int64)
            try:
                with atomic_path(flat_path) as tmp:
                    np.save(tmp, flat)
                with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                    np.savez(handle, classes=classes, bounds=bounds)
            except (OSError, HistosegError):
                return positions
        # memory-mapped: a patch draw reads one position; every process shares the pages
        with np.load(path) as index:
            classes, bounds = index["classes"], index["bounds"]
        flat = np.load(flat_path, mmap_mode="r")
        return {int(c): flat[bounds[i] : bounds[i + 1]] for i, c in enumerate(classes)}


# -- the cache -----------------------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def slide_fingerprint(path: Path, blocks: int = 16, block_bytes: int = 1 << 16) -> str:
    """A content key of a slide file, read in milliseconds.

    Its size, first and last MiB, and ``blocks`` evenly spaced blocks of ``block_bytes`` (a
    whole-slide hash would cost seconds per GB at every setup).
    """
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        for k in range(blocks):
            handle.seek(size * k // blocks)
            digest.update(handle.read(block_bytes))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return sorted(([str(k), _plain(v)] for k, v in value.items()), key=lambda kv: kv[0])
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@functools.cache
def code_key() -> str:
    """Hash of the source of the code that prepares labels (a changed builder never reuses a cache)."""
    import histoseg

    package = Path(histoseg.__file__).parent
    files = sorted((package / "labels").glob("*.py")) + [
        package / "io" / "slide.py",
        package / "io" / "tissue.py",
    ]
    digest = hashlib.sha256(histoseg.__version__.encode())
    for file in files:
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


def cache_key(record: SlideRecord, options: GridOptions) -> str:
    """Hex key of a slide's prepared labels: slide and label content, table row, grid options and code."""
    assert record.labels is not None
    parts = {
        "format": FORMAT,
        "code": code_key(),
        "tile": TILE,
        "slide": slide_fingerprint(Path(record.slide)),
        "labels": _file_digest(Path(record.labels)),
        "labels_suffix": Path(record.labels).suffix.lower(),
        "kind": record.kind,
        "mpp": record.mpp,
        "label_offset": list(record.label_offset),
        "options": _plain(dataclasses.asdict(options)),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def prepared_labels_dir() -> Path:
    """``<cache folder>/prepared-labels``."""
    return cache_folder()[0] / PREPARED_LABELS


def _build(
    record: SlideRecord, options: GridOptions
) -> tuple[TiledLabels, tuple[float, float], float, float]:
    from histoseg.errors import LabelError
    from histoseg.io.slide import Slide
    from histoseg.labels.grid import SPARSE_GRIDS, build_label_grid

    sparse = SPARSE_GRIDS.get(record.kind)
    if record.labels is not None and sparse is not None:
        with Slide(Path(record.slide), mpp=record.mpp) as slide:
            made = sparse(record, slide, options)
            scale, slide_mpp = options.mpp / slide.mpp, slide.mpp
        if made is not None:
            shape, flat, values, origin = made
            store = TiledLabels.from_sparse(shape, flat, values)
            if store.val.size == 0:
                raise LabelError(
                    f"{record.labels}: no labelled pixel at mpp {options.mpp}; check the labels and value map"
                )
            return store, origin, scale, slide_mpp
    grid = build_label_grid(record, options)
    return TiledLabels.from_array(grid.labels), grid.origin, grid.scale, grid.slide_mpp


def prepare_labels(record: SlideRecord, options: GridOptions, cache: bool = True) -> PreparedLabels:
    """A slide's labels on the training grid, from the cache or built (and cached) now.

    Args:
        record: Slide table row with labels.
        options: Grid options.
        cache: Read and write ``<cache folder>/prepared-labels`` (False: build in memory only).

    Raises:
        HistosegError: see :func:`histoseg.labels.grid.build_label_grid`.
    """
    from histoseg.labels.grid import check_labelled_row

    check_labelled_row(record)
    if not cache:
        store, origin, scale, slide_mpp = _build(record, options)
        return PreparedLabels(store, origin, scale, slide_mpp)
    try:
        key = cache_key(record, options)
    except OSError:  # a missing or unreadable slide or labels file: its reader says so in one line
        store, origin, scale, slide_mpp = _build(record, options)
        return PreparedLabels(store, origin, scale, slide_mpp)
    root = prepared_labels_dir()
    folder = root / key
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            store = TiledLabels.load(folder, meta["shape"], meta["tile"])
            return PreparedLabels(
                store, tuple(meta["origin"]), meta["scale"], meta["slide_mpp"], folder, reused=True
            )
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable prepared labels (%s); preparing them again", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
    store, origin, scale, slide_mpp = _build(record, options)
    meta = {
        "shape": list(store.shape),
        "tile": store.tile,
        "origin": [float(origin[0]), float(origin[1])],
        "scale": float(scale),
        "slide_mpp": float(slide_mpp),
        "slide": str(record.slide),
        "labels": str(record.labels),
        "kind": record.kind,
        "format": FORMAT,
    }
    tmp = root / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        store.save(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, folder)  # atomic; fails when another rank put the same folder first
        except OSError:
            if not meta_path.is_file():
                raise
    except OSError as exc:
        log.warning("%s: cannot cache the prepared labels (%s); kept in memory only", root, exc)
        return PreparedLabels(store, origin, scale, slide_mpp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PreparedLabels(TiledLabels.load(folder, store.shape, store.tile), origin, scale, slide_mpp, folder)


__all__ = [
    "FORMAT",
    "TILE",
    "PreparedLabels",
    "TiledLabels",
    "cache_key",
    "prepare_labels",
    "prepared_labels_dir",
    "slide_fingerprint",
]
