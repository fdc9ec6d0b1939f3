"""The counting frame: where points may fall on a slide, and its strata.

A :class:`CountingFrame` is a coarse raster of *cells* laid over the slide's level-0 pixels: cell
``(r, c)`` covers ``x`` in ``[c * cell_w, (c + 1) * cell_w)`` and ``y`` in ``[r * cell_h,
(r + 1) * cell_h)``, clipped to the slide. Each cell holds the index of its stratum, or 255 when
the cell lies outside the frame. Points are placed uniformly over the frame's *area* (cells are
weighted by the area they cover inside the slide), so every level-0 position of the frame has the
same chance of being counted, and a stratum's weight ``W_h`` is its exact share of the frame's
area.

:func:`frame_from_label_map` makes the frame from a label map: the tissue the model found (every
class but background), grown by a margin so that tissue the model called glass near its edge is
counted too, with the strata ``none`` (one stratum), ``class`` (the model's class of each cell) or
``class+edge`` (class, split into cells on a class boundary and cells inside a region: the model's
errors gather on boundaries).

Example:
    >>> import numpy as np
    >>> from histoseg.sampling.frame import CountingFrame
    >>> frame = CountingFrame(np.array([[0, 1], [255, 1]], np.uint8), (10.0, 10.0), (20, 15), ("a", "b"))
    >>> frame.weights().round(3).tolist(), frame.area()
    ([0.4, 0.6], 250.0)
"""

from __future__ import annotations

import base64
import hashlib
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from histoseg.errors import LabelError

OUTSIDE = 255
"""Cell value of cells outside the frame."""

StrataRule = Literal["none", "class", "class+edge"]


@dataclass(frozen=True)
class CountingFrame:
    """A raster of cells over a slide: the stratum of each cell, 255 outside the frame.

    Attributes:
        cells: (R, C) uint8 stratum index per cell (``OUTSIDE`` = not in the frame).
        cell_size: ``(width, height)`` of one cell in level-0 pixels.
        slide_size: Level-0 ``(width, height)`` of the slide.
        strata: Stratum names, in index order.
    """

    cells: np.ndarray
    cell_size: tuple[float, float]
    slide_size: tuple[int, int]
    strata: tuple[str, ...]

    def __post_init__(self) -> None:
        cells = np.ascontiguousarray(self.cells, dtype=np.uint8)
        object.__setattr__(self, "cells", cells)
        object.__setattr__(self, "cell_size", (float(self.cell_size[0]), float(self.cell_size[1])))
        object.__setattr__(self, "slide_size", (int(self.slide_size[0]), int(self.slide_size[1])))
        object.__setattr__(self, "strata", tuple(str(s) for s in self.strata))
        if cells.ndim != 2 or cells.size == 0:
            raise ValueError(f"CountingFrame: cells must be a non-empty 2-D array, got shape {cells.shape}")
        if not all(math.isfinite(v) and v > 0 for v in self.cell_size):
            raise ValueError(f"CountingFrame: cell_size must be positive, got {self.cell_size}")
        if not 1 <= len(self.strata) < OUTSIDE:
            raise ValueError("CountingFrame: need 1 to 254 strata")
        inside = cells[cells != OUTSIDE]
        if inside.size and int(inside.max()) >= len(self.strata):
            raise ValueError(f"CountingFrame: stratum index {int(inside.max())} has no name")

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the cell raster."""
        return int(self.cells.shape[0]), int(self.cells.shape[1])

    def cell_areas(self) -> np.ndarray:
        """(R, C) float64 area of each cell inside the slide, level-0 px² (edge cells are partial)."""
        rows, cols = self.shape
        cw, ch = self.cell_size
        width, height = self.slide_size
        w = np.clip(np.minimum((np.arange(cols) + 1) * cw, width) - np.arange(cols) * cw, 0, None)
        h = np.clip(np.minimum((np.arange(rows) + 1) * ch, height) - np.arange(rows) * ch, 0, None)
        return h[:, None] * w[None, :]

    def stratum_areas(self) -> np.ndarray:
        """(H,) area of each stratum in level-0 px²."""
        inside = self.cells != OUTSIDE
        return np.bincount(
            self.cells[inside].astype(np.int64), weights=self.cell_areas()[inside], minlength=len(self.strata)
        )[: len(self.strata)]

    def area(self) -> float:
        """Area of the frame in level-0 px²."""
        return float(self.stratum_areas().sum())

    def weights(self) -> np.ndarray:
        """(H,) share of the frame's area in each stratum (``W_h``, summing to 1)."""
        areas = self.stratum_areas()
        total = areas.sum()
        return areas / total if total > 0 else areas

    def locate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(n,) stratum index of the cell under each level-0 point (``OUTSIDE`` off the frame or slide)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        out = np.full(x.shape[0], OUTSIDE, np.uint8)
        width, height = self.slide_size
        ok = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (y >= 0) & (x < width) & (y < height)
        cols = np.floor(x[ok] / self.cell_size[0]).astype(np.int64)
        rows = np.floor(y[ok] / self.cell_size[1]).astype(np.int64)
        inside = (rows < self.shape[0]) & (cols < self.shape[1])
        values = np.full(rows.shape[0], OUTSIDE, np.uint8)
        values[inside] = self.cells[rows[inside], cols[inside]]
        out[ok] = values
        return out

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the geometry and the cells: two frames are the same iff this is."""
        digest = hashlib.sha256()
        digest.update(repr((self.shape, self.cell_size, self.slide_size, self.strata)).encode())
        digest.update(self.cells.tobytes())
        return digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (cells zlib-compressed, base64)."""
        return {
            "cell_size": list(self.cell_size),
            "slide_size": list(self.slide_size),
            "shape": list(self.shape),
            "strata": list(self.strata),
            "weights": [round(float(w), 12) for w in self.weights()],
            "cells_zlib_base64": base64.b64encode(zlib.compress(self.cells.tobytes(), 9)).decode("ascii"),
            "sha256": self.fingerprint(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> CountingFrame:
        """Read :meth:`to_dict`'s record; ``where`` names the file in error messages.

        Raises:
            LabelError: a missing or malformed field, or cells that do not match their checksum.
        """
        try:
            rows, cols = (int(v) for v in data["shape"])
            raw = zlib.decompress(base64.b64decode(str(data["cells_zlib_base64"]), validate=True))
            cells = np.frombuffer(raw, np.uint8).reshape(rows, cols).copy()
            frame = cls(
                cells,
                (float(data["cell_size"][0]), float(data["cell_size"][1])),
                (int(data["slide_size"][0]), int(data["slide_size"][1])),
                tuple(str(s) for s in data["strata"]),
            )
        except (KeyError, TypeError, ValueError, IndexError, zlib.error) as exc:
            raise LabelError(
                f"{where}: the counting frame is unreadable ({type(exc).__name__}: {str(exc)[:80]}); "
                "this file is written by 'histoseg sample': do not edit it, or sample again"
            ) from None
        if data.get("sha256") != frame.fingerprint():
            raise LabelError(
                f"{where}: the counting frame does not match its checksum; this file is written by "
                "'histoseg sample': do not edit it, or sample again into a new folder"
            )
        return frame


def _edges(labels: np.ndarray) -> np.ndarray:
    """(h, w) bool: cells with a 4-neighbour of another label."""
    edge = np.zeros(labels.shape, bool)
    diff_v = labels[1:, :] != labels[:-1, :]
    diff_h = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= diff_v
    edge[:-1, :] |= diff_v
    edge[:, 1:] |= diff_h
    edge[:, :-1] |= diff_h
    return edge


def _merge_small(cells: np.ndarray, weights_of: Any, names: list[str], min_share: float) -> tuple[np.ndarray, list[str]]:
    """Merge strata under ``min_share`` of the frame into one ``other strata`` stratum (or the largest)."""
    shares = weights_of(cells, len(names))
    small = [h for h, s in enumerate(shares) if 0 < s < min_share]
    if len(small) < 1:
        keep = [h for h, s in enumerate(shares) if s > 0]
    else:
        keep = [h for h, s in enumerate(shares) if s >= min_share]
    mapping = np.full(256, OUTSIDE, np.uint8)
    new_names = [names[h] for h in keep]
    for i, h in enumerate(keep):
        mapping[h] = i
    if small:
        rest = sum(shares[h] for h in small)
        if rest >= min_share or not keep:
            mapping[small] = len(new_names)
            new_names.append("small strata (" + ", ".join(names[h] for h in small) + ")")
        else:
            largest = max(keep, key=lambda h: shares[h])
            mapping[small] = mapping[largest]
            new_names[int(mapping[largest])] += " + " + ", ".join(names[h] for h in small)
    return mapping[cells], new_names


def frame_from_label_map(
    labels: np.ndarray,
    level_scale: tuple[float, float],
    slide_size: tuple[int, int],
    classes: Sequence[str],
    background: int | None,
    *,
    strata: StrataRule = "class",
    margin_cells: int = 2,
    min_share: float = 0.02,
) -> CountingFrame:
    """The counting frame of a slide from (a pyramid level of) its label map.

    The frame is every cell the model labelled tissue (any class but ``background``; cells the
    label map leaves unlabelled, 255, count as glass) grown by ``margin_cells`` cells, so that
    points also fall on glass and on tissue the model missed near its edge. Strata below
    ``min_share`` of the frame are merged (into one stratum, or into the largest one).

    Args:
        labels: (h, w) uint8 class index per label-map pixel of the level read.
        level_scale: Level-0 *slide* pixels per level pixel along ``(x, y)``.
        slide_size: Level-0 ``(width, height)`` of the slide.
        classes: Class names of the label map, index order.
        background: Index of the glass class, or None (then the whole slide is the frame).
        strata: ``none``, ``class`` or ``class+edge`` (see the module docstring).
        margin_cells: Growth of the tissue into glass, in cells.
        min_share: Strata smaller than this share of the frame are merged.

    Returns:
        The frame: one cell per level pixel, cell size = ``level_scale``.

    Raises:
        LabelError: the label map has no tissue (every pixel background or unlabelled).
    """
    from scipy import ndimage

    labels = np.asarray(labels, dtype=np.uint8)
    names = list(classes)
    tissue = labels != OUTSIDE
    if background is not None:
        tissue &= labels != background
    if not tissue.any():
        raise LabelError(
            "label map: no tissue (every pixel is background); a slide without tissue has nothing to count"
        )
    frame = tissue
    if background is not None and margin_cells > 0:
        # Grown by a disk of radius margin_cells: every cell within that Euclidean distance of tissue
        # (a distance transform, linear in the cells, where a dilation by a large disk is quadratic in it).
        if tissue.any():
            frame = ndimage.distance_transform_edt(~tissue) <= margin_cells
        else:
            frame = tissue.copy()
    areas = CountingFrame(np.zeros(labels.shape, np.uint8), level_scale, slide_size, ("x",)).cell_areas()

    def shares(cells: np.ndarray, count: int) -> list[float]:
        inside = cells != OUTSIDE
        sums = np.bincount(cells[inside].astype(np.int64), weights=areas[inside], minlength=count)[:count]
        total = sums.sum()
        return [float(v / total) if total > 0 else 0.0 for v in sums]

    cells = np.full(labels.shape, OUTSIDE, np.uint8)
    if strata == "none":
        cells[frame] = 0
        return CountingFrame(cells, level_scale, slide_size, ("frame",))
    unlabelled = len(names)
    values = np.where(labels == OUTSIDE, unlabelled, labels).astype(np.int64)
    stratum_names = [*names, "unlabelled"]
    if strata == "class+edge":
        edge = _edges(labels)
        values = values * 2 + edge
        stratum_names = [f"{n} {part}" for n in stratum_names for part in ("inside", "edge")]
    elif strata != "class":
        raise ValueError(f"strata must be none, class or class+edge, got {strata!r}")
    cells[frame] = values[frame].astype(np.uint8)
    cells, stratum_names = _merge_small(cells, shares, stratum_names, min_share)
    return CountingFrame(cells, level_scale, slide_size, tuple(stratum_names))


__all__ = ["OUTSIDE", "CountingFrame", "StrataRule", "frame_from_label_map"]
