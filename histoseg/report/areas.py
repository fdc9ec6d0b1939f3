"""Per-class areas and the interstitial fraction of a label map (pure NumPy, plus tifffile reads).

This module owns the numbers of the per-slide report (docs/methods.md section 1):

- **area** of a class = pixel count x (mpp_x x mpp_y) um^2, at the resolution the label map
  was made at (``area_mm2 = area_um2 / 1e6``);
- **tissue** = every non-background class; ``fraction_of_tissue`` = class area / tissue area
  (undefined, NaN, for the background row and when there is no tissue);
- **interstitial fraction** (the biomarker), the same value on every row of a slide:
  ``A_interstitium / (A_interstitium + A_tubules + A_glomeruli)`` (:data:`INTERSTITIAL_FRACTION_DEFINITION`);
  NaN when a class is missing from the model or the denominator is 0;
- **expected area** = sum over pixels of the softmax probability of the class x pixel area: a cheap
  uncertainty signal next to the argmax area;
- the class colour table shared by label-map TIFFs, GeoJSON and overlays (:func:`class_colors`).

It also reads label-map TIFFs back without decoding a whole level at once
(:func:`label_map_counts`, :func:`read_label_level`).

Example:
    >>> from histoseg.report.areas import class_areas
    >>> rows = class_areas([100, 50, 30, 20, 0], mpp=2.0,
    ...                    classes=["background", "interstitium", "tubules", "glomeruli", "other"])
    >>> rows[1]["area_um2"], rows[1]["fraction_of_tissue"], rows[1]["interstitial_fraction"]
    (200.0, 0.5, 0.5)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from histoseg.errors import HistosegError

__all__ = [
    "INTERSTITIAL_FRACTION_DEFINITION",
    "class_areas",
    "class_colors",
    "find_class",
    "interstitial_fraction",
    "label_colormap",
    "label_map_counts",
    "label_map_counts_where",
    "label_map_values_at",
    "read_label_level",
]

INTERSTITIAL_FRACTION_DEFINITION = (
    "interstitial_fraction = A_interstitium / (A_interstitium + A_tubules + A_glomeruli); "
    "areas from argmax pixel counts of the label map x pixel area (mpp^2); "
    "background (glass) and 'other' (vessels, capsule, fat, ...) are not in the denominator"
)
"""The biomarker's definition, printed with every report."""

_ALIASES: dict[str, tuple[str, ...]] = {
    "background": ("background", "glass", "bg"),
    "interstitium": ("interstitium", "interstitial"),
    "tubules": ("tubules", "tubule"),
    "glomeruli": ("glomeruli", "glomerulus"),
    "other": ("other",),
}

_NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "background": (255, 255, 255),
    "interstitium": (230, 159, 0),  # Okabe-Ito orange
    "tubules": (0, 114, 178),  # Okabe-Ito blue
    "glomeruli": (0, 158, 115),  # Okabe-Ito bluish green
    "other": (80, 80, 80),  # dark grey: vessels, capsule, fat (not parenchyma)
}
_EXTRA_COLORS: tuple[tuple[int, int, int], ...] = (
    (86, 180, 233),  # sky blue
    (213, 94, 0),  # vermillion
    (204, 121, 167),  # reddish purple
    (240, 228, 66),  # yellow
    (0, 0, 0),
)


def find_class(classes: Sequence[str], name: str) -> int | None:
    """Index of a kidney class in ``classes``, accepting singular/plural aliases (case-insensitive).

    Args:
        classes: Class names in index order.
        name: Canonical name (``"background"``, ``"interstitium"``, ``"tubules"``, ``"glomeruli"``,
            ``"other"``) or any other exact name.

    Returns:
        The index, or None when absent.
    """
    wanted = {a.lower() for a in _ALIASES.get(name.lower(), (name.lower(),))}
    for index, cls in enumerate(classes):
        if str(cls).strip().lower() in wanted:
            return index
    return None


def class_colors(classes: Sequence[str]) -> np.ndarray:
    """Display colour of each class (colour-blind safe Okabe-Ito colours for the kidney classes).

    Args:
        classes: Class names in index order.

    Returns:
        (C, 3) uint8 RGB.
    """
    colors = np.zeros((len(classes), 3), np.uint8)
    extra = 0
    for index, cls in enumerate(classes):
        canonical = next((key for key, names in _ALIASES.items() if str(cls).lower() in names), None)
        if canonical is not None:
            colors[index] = _NAMED_COLORS[canonical]
        else:
            colors[index] = _EXTRA_COLORS[extra % len(_EXTRA_COLORS)]
            extra += 1
    return colors


def label_colormap(classes: Sequence[str]) -> np.ndarray:
    """A full 256-entry colour table for a label-map TIFF: class colours, then black (255 = unlabelled).

    Returns:
        (256, 3) uint8.
    """
    table = np.zeros((256, 3), np.uint8)
    table[: len(classes)] = class_colors(classes)
    return table


def interstitial_fraction(counts: Sequence[float] | np.ndarray, classes: Sequence[str]) -> float:
    """The biomarker ``A_int / (A_int + A_tub + A_glom)`` from per-class pixel counts (or areas).

    Args:
        counts: (C,) pixel counts or areas, index order of ``classes``.
        classes: Class names.

    Returns:
        The fraction in [0, 1], or NaN when a class is missing or the denominator is 0.
    """
    idx = [find_class(classes, name) for name in ("interstitium", "tubules", "glomeruli")]
    if any(i is None for i in idx):
        return math.nan
    values = [float(counts[i]) for i in idx if i is not None]
    total = sum(values)
    return values[0] / total if total > 0 else math.nan


def class_areas(
    counts: Sequence[float] | np.ndarray,
    mpp: float | tuple[float, float],
    classes: Sequence[str],
    background: str | int | None = "background",
    expected_counts: Sequence[float] | np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Per-class area rows of one label map.

    Args:
        counts: (C,) argmax pixel counts per class (index order of ``classes``); extra entries
            (e.g. a 256-bin histogram whose bin 255 counts unlabelled pixels) are ignored.
        mpp: Resolution of the label map in microns per pixel, one value or ``(mpp_x, mpp_y)``.
        classes: Class names.
        background: Name or index of the background (glass) class, excluded from tissue;
            None when every class is tissue.
        expected_counts: (C,) sum of softmax probabilities per class (pixels), or None.

    Returns:
        One dict per class with ``class``, ``pixels`` (int), ``area_um2``, ``area_mm2``,
        ``fraction_of_tissue`` (NaN for background and when the tissue area is 0),
        ``interstitial_fraction`` (same on every row, NaN when undefined) and
        ``expected_area_um2`` (NaN without ``expected_counts``).

    Raises:
        HistosegError: fewer counts than classes, negative counts, or an invalid mpp.
    """
    mpp_x, mpp_y = (mpp, mpp) if not isinstance(mpp, (tuple, list)) else (mpp[0], mpp[1])
    if not all(math.isfinite(float(v)) and float(v) > 0 for v in (mpp_x, mpp_y)):
        raise HistosegError(
            f"mpp={mpp!r}: the label map's resolution must be a positive number of microns per pixel"
        )
    pixel_area = float(mpp_x) * float(mpp_y)
    values = np.asarray(counts, dtype=np.float64).ravel()
    if values.size < len(classes):
        raise HistosegError(
            f"got {values.size} pixel counts for {len(classes)} classes; pass one count per class"
        )
    values = values[: len(classes)]
    if (values < 0).any():
        raise HistosegError("pixel counts must be non-negative")
    if expected_counts is not None:
        expected = np.asarray(expected_counts, dtype=np.float64).ravel()[: len(classes)]
        if expected.size < len(classes):
            raise HistosegError(f"got {expected.size} expected counts for {len(classes)} classes")
    else:
        expected = np.full(len(classes), np.nan)
    if isinstance(background, str):
        bg_index = find_class(classes, background)
    else:
        bg_index = background
    tissue_mask = np.ones(len(classes), bool)
    if bg_index is not None and 0 <= bg_index < len(classes):
        tissue_mask[bg_index] = False
    tissue = float(values[tissue_mask].sum())
    fraction = interstitial_fraction(values, classes)
    rows: list[dict[str, Any]] = []
    for index, name in enumerate(classes):
        area = float(values[index]) * pixel_area
        is_tissue = bool(tissue_mask[index])
        rows.append(
            {
                "class": str(name),
                "pixels": int(round(values[index])),
                "area_um2": area,
                "area_mm2": area / 1e6,
                "fraction_of_tissue": float(values[index]) / tissue
                if (is_tissue and tissue > 0)
                else math.nan,
                "interstitial_fraction": fraction,
                "expected_area_um2": float(expected[index]) * pixel_area,
            }
        )
    return rows


# -- label-map TIFFs ---------------------------------------------------------------------------


def _open_tiff(path: str | os.PathLike[str]) -> Any:
    import tifffile

    try:
        return tifffile.TiffFile(os.fspath(path))
    except (OSError, tifffile.TiffFileError) as exc:
        raise HistosegError(
            f"{path}: cannot read the label-map TIFF ({exc}); re-run the prediction"
        ) from None


def _level_pages(tif: Any) -> list[Any]:
    """Top-level pages that are pyramid levels of page 0 (same kind, smaller), finest first."""
    pages = [tif.pages[i] for i in range(len(tif.pages))]
    first = pages[0]
    levels = [first]
    for page in pages[1:]:
        if page.ndim == first.ndim and page.shape[0] <= first.shape[0] and page.shape[1] <= first.shape[1]:
            levels.append(page)
    return levels


def _row_blocks(
    source: str | os.PathLike[str] | np.ndarray, rows_per_block: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(y0, rows)`` blocks of a label map's level 0, top to bottom (uint8 checked).

    A TIFF is read through tifffile's Zarr store, a block of rows at a time, never decoding the
    whole level at once.
    """
    if not isinstance(source, (str, os.PathLike)):
        array = np.asarray(source)
        if array.dtype != np.uint8:
            raise HistosegError(f"label map dtype is {array.dtype}; label maps are uint8")
        for y0 in range(0, array.shape[0], rows_per_block):
            yield y0, array[y0 : y0 + rows_per_block]
        return
    import zarr

    with _open_tiff(source) as tif:
        page = tif.pages[0]
        if page.dtype != np.uint8 or page.ndim != 2:
            raise HistosegError(
                f"{source}: not a label map (need a 2-D uint8 TIFF, got {page.dtype} {page.shape})"
            )
        store = page.aszarr()
        try:
            stored = zarr.open_array(store, mode="r")
            step = max(rows_per_block, int(page.tilelength or 1))
            for y0 in range(0, int(page.shape[0]), step):
                yield y0, np.asarray(stored[y0 : y0 + step])
        finally:
            store.close()


def label_map_counts(source: str | os.PathLike[str] | np.ndarray, rows_per_block: int = 1024) -> np.ndarray:
    """Histogram of the values of a label map (class indices; 255 = unlabelled).

    A TIFF is read block of rows by block of rows through tifffile's Zarr store, never decoding
    the whole level at once.

    Args:
        source: A label-map TIFF (level 0 = page 0 is counted) or an (H, W) uint8 array.
        rows_per_block: Rows read per block for TIFFs.

    Returns:
        (256,) int64 counts of each value 0..255.
    """
    counts = np.zeros(256, np.int64)
    for _, block in _row_blocks(source, rows_per_block):
        counts += np.bincount(block.ravel(), minlength=256)
    return counts


def label_map_counts_where(
    source: str | os.PathLike[str] | np.ndarray,
    inside: Callable[[np.ndarray, np.ndarray], np.ndarray],
    rows_per_block: int = 1024,
) -> np.ndarray:
    """Histogram of a label map's values over the pixels where ``inside(rows, cols)`` is True.

    Read block of rows by block of rows (as :func:`label_map_counts`).

    Args:
        source: A label-map TIFF (page 0) or an (H, W) uint8 array.
        inside: Called with a block's (h,) row indices and the (w,) column indices of level 0;
            returns an (h, w) bool mask of the pixels to count.
        rows_per_block: Rows read per block for TIFFs.

    Returns:
        (256,) int64 counts of each value 0..255 over the selected pixels.
    """
    counts = np.zeros(256, np.int64)
    for y0, block in _row_blocks(source, rows_per_block):
        rows = np.arange(y0, y0 + block.shape[0])
        cols = np.arange(block.shape[1])
        counts += np.bincount(block[inside(rows, cols)], minlength=256)
    return counts


def label_map_values_at(
    source: str | os.PathLike[str] | np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    rows_per_block: int = 1024,
) -> np.ndarray:
    """Label-map values at given pixels of level 0, read block of rows by block of rows.

    Args:
        source: A label-map TIFF (page 0) or an (H, W) uint8 array.
        rows: (n,) int row index of each pixel (0 <= row < H).
        cols: (n,) int column index of each pixel (0 <= col < W).
        rows_per_block: Rows read per block for TIFFs.

    Returns:
        (n,) uint8 values, in the order of the pixels given.

    Raises:
        HistosegError: a pixel lies outside the label map, or the source is not a label map.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    cols = np.asarray(cols, dtype=np.int64).reshape(-1)
    values = np.zeros(rows.shape[0], np.uint8)
    found = np.zeros(rows.shape[0], bool)
    for y0, block in _row_blocks(source, rows_per_block):
        inside = (rows >= y0) & (rows < y0 + block.shape[0]) & (cols >= 0) & (cols < block.shape[1])
        values[inside] = block[rows[inside] - y0, cols[inside]]
        found |= inside
    if not found.all():
        first = int(np.flatnonzero(~found)[0])
        raise HistosegError(
            f"{source if isinstance(source, (str, os.PathLike)) else 'label map'}: pixel "
            f"(row {rows[first]}, col {cols[first]}) is outside the label map; check the point coordinates"
        )
    return values


def read_label_level(
    path: str | os.PathLike[str], max_pixels: int = 4096 * 4096
) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """Read the finest pyramid level of a label-map TIFF that has at most ``max_pixels`` pixels.

    Args:
        path: Label-map TIFF written by :func:`histoseg.inference.predict.predict_slide`.
        max_pixels: Bound on the level's ``height x width`` (the coarsest level is used if none fits).

    Returns:
        ``(labels, (scale_x, scale_y), (width0, height0))``: the level as (h, w) uint8, its level-0
        pixels per level pixel along x and y, and the level-0 size.
    """
    with _open_tiff(path) as tif:
        levels = _level_pages(tif)
        height0, width0 = int(levels[0].shape[0]), int(levels[0].shape[1])
        chosen = levels[-1]
        for page in levels:
            if int(page.shape[0]) * int(page.shape[1]) <= max_pixels:
                chosen = page
                break
        labels = np.asarray(chosen.asarray())
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise HistosegError(
            f"{path}: not a label map (need a 2-D uint8 TIFF, got {labels.dtype} {labels.shape})"
        )
    scale = (width0 / labels.shape[1], height0 / labels.shape[0])
    return labels, scale, (width0, height0)
