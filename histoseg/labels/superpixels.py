"""Scribbles grown to the colour superpixels they touch (ScribbleSup-style label propagation).

- :func:`grow_to_superpixels` — sparse labels of one image grown to its SLIC superpixels;
- :func:`grow_scribbles_on_slide` — the same on a whole-slide label grid, reading only the
  windows near strokes (``data.labels.grow_um``).

Example:
    >>> import numpy as np
    >>> from histoseg.labels.superpixels import grow_to_superpixels
    >>> image = np.zeros((40, 80, 3), np.uint8); image[:, 40:] = 255  # two flat halves
    >>> labels = np.full((40, 80), 255, np.uint8); labels[20, 10] = 1
    >>> grown = grow_to_superpixels(labels, image, segment_px=40)
    >>> bool((grown[:, :40] == 1).all()), bool((grown[:, 40:] == 255).all())
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from histoseg import IGNORE_INDEX
from histoseg.errors import ConfigError

if TYPE_CHECKING:
    from histoseg.io.slide import Slide


def _check_segment_size(segment_px: float) -> None:
    if not segment_px > 1:
        raise ConfigError(f"superpixel size {segment_px} px must be above 1 pixel; raise the size in microns")


def _superpixels(image: np.ndarray, segment_px: float, compactness: float) -> np.ndarray:
    """SLIC superpixels about ``segment_px`` pixels across: (H, W) int labels from 0."""
    from skimage.segmentation import slic

    n_segments = max(1, round(image.shape[0] * image.shape[1] / float(segment_px) ** 2))
    return slic(image, n_segments=n_segments, compactness=compactness, start_label=0)


def grow_to_superpixels(
    labels: np.ndarray,
    image: np.ndarray,
    segment_px: float,
    *,
    compactness: float = 20.0,
    classes: Iterable[int] | None = None,
    ignore: int = IGNORE_INDEX,
) -> np.ndarray:
    """Grow sparse labels to the superpixels they touch (ScribbleSup-style propagation).

    The image is cut into SLIC superpixels (``skimage.segmentation.slic``, colour + position,
    about ``segment_px`` pixels across); a superpixel touched by labelled pixels of exactly one
    class takes that class everywhere; one touched by two or more classes, or by none, keeps
    its pixels as they were. Labelled pixels never change. Lin et al., "ScribbleSup", CVPR 2016
    propagate scribbles over superpixels the same way (with a graphical model on top).

    Only ``classes`` grow (all by default). Compact structures with a clear colour edge (tubules,
    glomeruli) fill their superpixels well, whereas a thin compartment such as the renal
    interstitium shares its superpixels with the PAS-positive basement membranes of the tubules
    around it (on the FLASH tiles, 6-um superpixels: grown tubule labels 98 % correct, grown
    interstitium labels 77 %).

    Args:
        labels: (H, W) uint8 class indices, ``ignore`` = unlabelled.
        image: (H, W, 3) uint8 RGB at the same pixels.
        segment_px: Superpixel side in pixels (> 1).
        compactness: SLIC compactness (higher: squarer superpixels, fewer colour edges).
        classes: Class indices that grow (None = all); other classes' strokes still block growth.
        ignore: Unlabelled value.

    Returns:
        (H, W) uint8 grown labels.
    """
    labels = np.asarray(labels)
    if image.shape[:2] != labels.shape:
        raise ValueError(
            f"grow_to_superpixels: image {image.shape[:2]} and labels {labels.shape} differ in size"
        )
    _check_segment_size(segment_px)
    out = labels.copy()
    labelled = labels != ignore
    if not labelled.any():
        return out
    segments = _superpixels(image, segment_px, compactness)
    seg = segments[labelled]
    cls = labels[labelled].astype(np.int64)
    n = int(segments.max()) + 1
    # per superpixel: lowest and highest class touching it; equal -> one class
    low = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(low, seg, cls)
    high = np.full(n, -1, dtype=np.int64)
    np.maximum.at(high, seg, cls)
    single = (high >= 0) & (low == high)
    if classes is not None:
        grow_classes = [int(c) for c in classes]
        allowed = np.zeros(max([int(high.max()), *grow_classes, 0]) + 1, dtype=bool)
        allowed[grow_classes] = True
        single &= allowed[np.maximum(high, 0)]
    grow = single[segments] & ~labelled
    out[grow] = high[segments][grow].astype(np.uint8)
    return out


def windows_near_labels(
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
    out = grid.copy()
    for (r0, r1, c0, c1), (R0, R1, C0, C1) in windows_near_labels(grid, math.ceil(2 * segment_px), window):
        image = slide.read_at_mpp(round(C0 * scale), round(R0 * scale), C1 - C0, R1 - R0, mpp)
        grown = grow_to_superpixels(grid[R0:R1, C0:C1], image, segment_px, classes=classes)
        out[r0:r1, c0:c1] = grown[r0 - R0 : r1 - R0, c0 - C0 : c1 - C0]
    return out


__all__ = ["grow_scribbles_on_slide", "grow_to_superpixels", "windows_near_labels"]
