"""Strokes and the one raster rule of scribbles.

A scribble is a stroke a few pixels wide drawn inside one structure and given that structure's
class. :func:`rasterize_strokes` is the one rasteriser of strokes, shared by the GeoJSON reader
(:mod:`histoseg.labels.scribbles`), the simulator (:mod:`histoseg.labels.simulate`) and the
writer's round trip.

Raster rule (exact, used everywhere): mask pixel ``(r, c)`` has its centre at mask
coordinates ``(x, y) = (c + 0.5, r + 0.5)``; level-0 coordinates are mask coordinates times
``scale``. A stroke (polyline, vertices in mask pixels, rounded to 1e-6 px) labels every pixel
whose centre lies within ``brush_px / 2`` (inclusive) of one of its segments or vertices; a
polygon labels every pixel whose centre lies inside it or on its boundary. Strokes are drawn
in order and **the last stroke wins** where strokes of two classes overlap.

Example:
    >>> import numpy as np
    >>> from histoseg.labels.strokes import Stroke, rasterize_strokes
    >>> m = rasterize_strokes([Stroke(1, np.array([[1.5, 2.5], [5.5, 2.5]]))], (5, 8), brush_px=3)
    >>> (m == 1).sum(axis=1).tolist()  # rows 1-3 labelled from x = 0.5 .. 6.5
    [0, 7, 7, 7, 0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from histoseg import IGNORE_INDEX
from histoseg.errors import ConfigError, LabelError

COORD_DECIMALS = 6
"""Stroke vertices are rounded to 1e-6 mask pixels before rasterising (robust round trips)."""


class Stroke(NamedTuple):
    """One scribble stroke.

    Attributes:
        class_index: Class of the stroke.
        xy: (N, 2) float64 vertices ``(x, y)`` in mask pixels (pixel ``(r, c)`` has its centre at
            ``(c + 0.5, r + 0.5)``); N = 1 is a dot.
    """

    class_index: int
    xy: np.ndarray


_BIG_BOX = 4096  # candidate pixels above which one segment is handled in row strips
_STRIP = 32


def capsule_candidates(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, radius: float, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels whose centre is within ``radius`` of each segment ``a-b`` (a == b: a disk).

    Args:
        ax: (S,) float64 segment start x in mask pixels.
        ay: (S,) start y.
        bx: (S,) end x (== ax for a dot).
        by: (S,) end y.
        radius: Distance in mask pixels (inclusive).
        shape: (H, W) of the mask; pixels outside are dropped.

    Returns:
        ``(rows, cols, segment)`` int64 arrays, one entry per (pixel, segment) hit.
    """
    height, width = shape
    r2 = radius * radius
    m = radius + 1.0
    c0 = np.floor(np.minimum(ax, bx) - m).astype(np.int64)
    c1 = np.ceil(np.maximum(ax, bx) + m).astype(np.int64)
    r0 = np.floor(np.minimum(ay, by) - m).astype(np.int64)
    r1 = np.ceil(np.maximum(ay, by) + m).astype(np.int64)
    c0, r0 = np.maximum(c0, 0), np.maximum(r0, 0)
    c1, r1 = np.minimum(c1, width - 1), np.minimum(r1, height - 1)
    h, w = r1 - r0 + 1, c1 - c0 + 1
    valid = (h > 0) & (w > 0)
    out_r: list[np.ndarray] = []
    out_c: list[np.ndarray] = []
    out_s: list[np.ndarray] = []

    def test(sel: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        # rows, cols: (len(sel), K) candidate pixels; the same elementwise arithmetic for every
        # caller, so the result for a (pixel, segment) pair never depends on the grouping.
        sax, say = ax[sel][:, None], ay[sel][:, None]
        dx, dy = (bx[sel] - ax[sel])[:, None], (by[sel] - ay[sel])[:, None]
        px, py = cols + 0.5, rows + 0.5
        length2 = dx * dx + dy * dy
        degenerate = length2 == 0.0
        t = ((px - sax) * dx + (py - say) * dy) / np.where(degenerate, 1.0, length2)
        t = np.clip(np.where(degenerate, 0.0, t), 0.0, 1.0)
        ex = px - (sax + t * dx)
        ey = py - (say + t * dy)
        hit = (ex * ex + ey * ey <= r2) & (rows < height) & (cols < width)
        seg = np.broadcast_to(sel[:, None], rows.shape)
        out_r.append(rows[hit])
        out_c.append(cols[hit])
        out_s.append(seg[hit])

    area = h * w
    small = np.flatnonzero(valid & (area <= _BIG_BOX))
    if small.size:
        # Group by power-of-two box sizes; padded candidates are outside the box and fail the test.
        hb = 1 << np.ceil(np.log2(h[small])).astype(np.int64)
        wb = 1 << np.ceil(np.log2(w[small])).astype(np.int64)
        for key in np.unique(hb * 65536 + wb):
            sel = small[(hb * 65536 + wb) == key]
            bh, bw = int(key // 65536), int(key % 65536)
            dr, dc = np.mgrid[0:bh, 0:bw]
            test(sel, r0[sel][:, None] + dr.ravel()[None], c0[sel][:, None] + dc.ravel()[None])
    for s in np.flatnonzero(valid & (area > _BIG_BOX)):
        sel = np.array([s])
        dy = by[s] - ay[s]
        for top in range(int(r0[s]), int(r1[s]) + 1, _STRIP):
            bottom = min(top + _STRIP - 1, int(r1[s]))
            if dy == 0:
                xlo, xhi = min(ax[s], bx[s]), max(ax[s], bx[s])
            else:
                ta, tb = (top - m - ay[s]) / dy, (bottom + 1 + m - ay[s]) / dy
                tlo, thi = max(0.0, min(ta, tb)), min(1.0, max(ta, tb))
                if tlo > thi:
                    continue
                xa, xb = ax[s] + tlo * (bx[s] - ax[s]), ax[s] + thi * (bx[s] - ax[s])
                xlo, xhi = min(xa, xb), max(xa, xb)
            left = max(int(c0[s]), int(math.floor(xlo - m)))
            right = min(int(c1[s]), int(math.ceil(xhi + m)))
            if right < left:
                continue
            dr, dc = np.mgrid[top : bottom + 1, left : right + 1]
            test(sel, dr.ravel()[None], dc.ravel()[None])
    if not out_r:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    return np.concatenate(out_r), np.concatenate(out_c), np.concatenate(out_s)


def stroke_elements(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segments and vertex dots of a polyline as ``(ax, ay, bx, by)`` arrays (dots have a == b)."""
    ax = np.concatenate([xy[:-1, 0], xy[:, 0]])
    ay = np.concatenate([xy[:-1, 1], xy[:, 1]])
    bx = np.concatenate([xy[1:, 0], xy[:, 0]])
    by = np.concatenate([xy[1:, 1], xy[:, 1]])
    return ax, ay, bx, by


def clean_xy(xy: Any) -> np.ndarray:
    """Vertices as (N, 2) float64, rounded to :data:`COORD_DECIMALS` decimals."""
    arr = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return np.round(arr, COORD_DECIMALS)


def check_brush(brush_px: float) -> float:
    """Validate a brush width; widths below one pixel are drawn one pixel wide."""
    ok = (
        isinstance(brush_px, (int, float, np.integer, np.floating))
        and math.isfinite(brush_px)
        and brush_px > 0
    )
    if not ok:
        raise ConfigError(
            f"brush width {brush_px!r} must be a positive number of pixels; set a positive brush_um"
        )
    return max(1.0, float(brush_px))


def stroke_pixels(xy: np.ndarray, shape: tuple[int, int], brush_px: float) -> np.ndarray:
    """Flat indices (into an (H, W) mask) of the pixels one stroke labels.

    Args:
        xy: (N, 2) vertices in mask pixels.
        shape: (H, W) of the mask.
        brush_px: Brush width (diameter) in mask pixels.

    Returns:
        Sorted unique int64 flat indices.
    """
    xy = clean_xy(xy)
    if xy.shape[0] == 0:
        return np.zeros(0, np.int64)
    rows, cols, _ = capsule_candidates(*stroke_elements(xy), check_brush(brush_px) / 2.0, shape)
    return np.unique(rows * int(shape[1]) + cols)


def rasterize_strokes(
    strokes: Iterable[Stroke | tuple[int, np.ndarray]], shape: tuple[int, int], brush_px: float
) -> np.ndarray:
    """Rasterise strokes into a sparse label mask.

    A pixel is labelled by a stroke when its centre ``(c + 0.5, r + 0.5)`` is within
    ``brush_px / 2`` (inclusive) of the polyline (vertices rounded to 1e-6 px). Strokes are
    drawn in order; the last stroke wins where strokes overlap. Parts outside the mask are
    clipped.

    Args:
        strokes: ``(class_index, (N, 2) xy)`` pairs, vertices in mask pixels.
        shape: (H, W) of the mask.
        brush_px: Brush width (diameter) in mask pixels, >= 1.

    Returns:
        (H, W) uint8: class index on stroked pixels, 255 elsewhere.
    """
    brush = check_brush(brush_px)
    out = np.full((int(shape[0]), int(shape[1])), IGNORE_INDEX, np.uint8)
    flat = out.reshape(-1)
    for class_index, xy in strokes:
        if not 0 <= int(class_index) < IGNORE_INDEX:
            raise LabelError(f"stroke class index {class_index} is not a class (0-254); fix the stroke list")
        flat[stroke_pixels(xy, out.shape, brush)] = int(class_index)
    return out


def polygon_pixels(polygon: Any, shape: tuple[int, int]) -> np.ndarray:
    """Flat indices of pixels whose centre is inside or on the boundary of a shapely polygon."""
    import shapely

    height, width = shape
    if polygon.is_empty:
        return np.zeros(0, np.int64)
    shapely.prepare(polygon)
    x0, y0, x1, y1 = polygon.bounds
    c0, c1 = max(0, math.floor(x0 - 1)), min(width - 1, math.ceil(x1 + 1))
    r0, r1 = max(0, math.floor(y0 - 1)), min(height - 1, math.ceil(y1 + 1))
    found: list[np.ndarray] = []
    cols = np.arange(c0, c1 + 1, dtype=np.int64)
    for top in range(r0, r1 + 1, 256):
        rows = np.arange(top, min(top + 256, r1 + 1), dtype=np.int64)
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        inside = shapely.intersects_xy(polygon, cc.ravel() + 0.5, rr.ravel() + 0.5)
        found.append((rr.ravel() * width + cc.ravel())[inside])
    return np.concatenate(found) if found else np.zeros(0, np.int64)


__all__ = [
    "COORD_DECIMALS",
    "Stroke",
    "capsule_candidates",
    "check_brush",
    "clean_xy",
    "polygon_pixels",
    "rasterize_strokes",
    "stroke_elements",
    "stroke_pixels",
]
