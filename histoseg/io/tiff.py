"""Pyramidal tiled TIFF writing with a bounded memory footprint.

This module owns writing images and label maps as tiled, pyramidal "generic"
TIFF files that OpenSlide, QuPath and tifffile open, with their resolution (mpp)
in the standard resolution tags. Reading slides is :mod:`histoseg.io.slide`'s job;
here there is only :func:`read_tiff_mpp`, the inverse of the tags written.

File layout (what OpenSlide's generic-TIFF driver expects):

- every level is its own top-level page (IFD), not a SubIFD; page 0 is level 0 and
  each further page is marked ``NewSubfileType = REDUCEDIMAGE`` (OpenSlide 4 ignores
  unmarked pages);
- every page is tiled (``tile`` x ``tile``) and carries ``XResolution``/``YResolution``
  in pixels per centimetre with ``ResolutionUnit = CENTIMETER``, so the level's mpp is
  ``mpp * downsample`` and OpenSlide reports ``openslide.mpp-x`` = ``mpp``;
- level ``k + 1`` is level ``k`` halved (``ceil(size / 2)``), until the longest side is
  at most ``min_level_size``;
- RGB images default to JPEG (YCbCr 4:2:0), 2-D arrays to Deflate; label maps with a
  ``colormap`` are written as ``photometric = palette`` (OpenSlide shows the colours,
  tifffile returns the class indices unchanged).

Memory: level 0 is read from the array-like tile by tile (an ``np.memmap`` works),
and each reduced level is computed block by block into a temporary memory-mapped
file beside the output, then written tile by tile, so memory stays at a few tiles
whatever the slide size. The file is written under a temporary name and renamed
when complete (:func:`histoseg.io.files.atomic_path`).

Example:
    >>> import numpy as np
    >>> from histoseg.io.tiff import write_pyramid_tiff, read_tiff_mpp
    >>> rgb = np.full((2048, 1536, 3), 230, np.uint8)
    >>> write_pyramid_tiff("slide.tif", rgb, mpp=0.5)  # doctest: +SKIP
    >>> read_tiff_mpp("slide.tif")  # doctest: +SKIP
    0.5
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import tifffile

from histoseg.errors import HistosegError
from histoseg.io.files import atomic_path

__all__ = ["describe_label_map", "level_shapes", "read_tiff_mpp", "write_pyramid_tiff"]

_BLOCK = 512
"""Side (pixels of the finer level) of the blocks a reduced level is computed from."""


class ArrayLike(Protocol):
    """What :func:`write_pyramid_tiff` needs from its input: shape, dtype and 2-D slicing."""

    @property
    def shape(self) -> tuple[int, ...]: ...  # noqa: D102

    @property
    def dtype(self) -> Any: ...  # noqa: D102

    def __getitem__(self, key: Any) -> Any: ...  # noqa: D105


def level_shapes(height: int, width: int, min_level_size: int = 512) -> list[tuple[int, int]]:
    """Return the ``(height, width)`` of every pyramid level written for an image.

    Level 0 is the image; each next level halves the previous one (rounding up)
    while the previous level's longest side is larger than ``min_level_size``.

    Args:
        height: Level-0 height in pixels.
        width: Level-0 width in pixels.
        min_level_size: The pyramid stops at the first level whose longest side is
            at most this many pixels.

    Returns:
        ``[(h0, w0), (h1, w1), ...]``; level ``k`` has downsample ``2**k`` (up to rounding).
    """
    shapes = [(int(height), int(width))]
    while max(shapes[-1]) > max(1, int(min_level_size)):
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def _iter_tiles(level: ArrayLike, tile: int) -> Iterator[np.ndarray]:
    """Yield the tiles of a 2-D or 3-D array-like in row-major order, edge tiles padded by replication.

    Replicating the edge (instead of tifffile's zero padding) keeps JPEG blocks on the
    image border free of dark ringing; the padding is outside the image and never read.
    """
    height, width = int(level.shape[0]), int(level.shape[1])
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            block = np.asarray(level[y0 : y0 + tile, x0 : x0 + tile], dtype=np.uint8)
            pad_y, pad_x = tile - block.shape[0], tile - block.shape[1]
            if pad_y or pad_x:
                pad = ((0, pad_y), (0, pad_x)) + ((0, 0),) * (block.ndim - 2)
                block = np.pad(block, pad, mode="edge")
            yield np.ascontiguousarray(block)


def _reduce_block(block: np.ndarray, interpolation: str) -> np.ndarray:
    """Halve a block (H, W[, C]) uint8: 2 x 2 mean (rounded) or top-left sample (nearest).

    Odd sizes are handled by replicating the last row/column, so an edge output pixel is
    the mean of the input pixels that exist.
    """
    if interpolation == "nearest":
        return block[::2, ::2]
    h, w = block.shape[:2]
    if h % 2 or w % 2:
        pad = ((0, h % 2), (0, w % 2)) + ((0, 0),) * (block.ndim - 2)
        block = np.pad(block, pad, mode="edge")
    acc = block.astype(np.uint16)
    total = acc[0::2, 0::2] + acc[1::2, 0::2] + acc[0::2, 1::2] + acc[1::2, 1::2]
    return ((total + 2) // 4).astype(np.uint8)


def _reduce_level(source: ArrayLike, target: np.ndarray, interpolation: str) -> None:
    """Fill ``target`` (a memmap of the halved shape) from ``source`` block by block."""
    height, width = int(source.shape[0]), int(source.shape[1])
    for y0 in range(0, height, _BLOCK):
        for x0 in range(0, width, _BLOCK):
            block = np.asarray(source[y0 : y0 + _BLOCK, x0 : x0 + _BLOCK], dtype=np.uint8)
            reduced = _reduce_block(block, interpolation)
            target[y0 // 2 : y0 // 2 + reduced.shape[0], x0 // 2 : x0 // 2 + reduced.shape[1]] = reduced


def _colormap_tag(colormap: np.ndarray) -> np.ndarray:
    """Turn an (N <= 256, 3) uint8 colour table into the TIFF ColorMap layout (3, 256) uint16."""
    table = np.asarray(colormap)
    if table.ndim != 2 or table.shape[1] != 3 or not 1 <= table.shape[0] <= 256:
        raise HistosegError(
            f"colormap has shape {table.shape}; pass an (N, 3) uint8 colour table with N <= 256"
        )
    full = np.zeros((256, 3), np.uint16)
    full[: table.shape[0]] = np.clip(table, 0, 255).astype(np.uint16)
    return np.ascontiguousarray((full * 257).T)


def _check_pyramid_options(
    path: str | os.PathLike[str],
    image: ArrayLike,
    mpp: float,
    tile: int,
    compression: str | None,
    interpolation: str | None,
    colormap: Any,
) -> tuple[tuple[int, ...], bool, str, str]:
    """The arguments of :func:`write_pyramid_tiff` checked, with their defaults filled in.

    Returns:
        ``(shape, is_rgb, compression, interpolation)``.

    Raises:
        HistosegError: invalid shape, dtype, mpp or option.
    """
    shape = tuple(int(s) for s in image.shape)
    if len(shape) == 3 and shape[2] == 1:
        raise HistosegError(
            f"{path}: single-channel images must be 2-D (H, W), got shape {shape}; squeeze the channel axis"
        )
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)) or min(shape[:2]) < 1:
        raise HistosegError(
            f"{path}: image has shape {shape}; give an (H, W) label map or an (H, W, 3) RGB image"
        )
    if np.dtype(image.dtype) != np.uint8:
        raise HistosegError(f"{path}: image dtype is {np.dtype(image.dtype)}; convert it to uint8 first")
    if not (isinstance(mpp, (int, float, np.floating)) and np.isfinite(mpp) and mpp > 0):
        raise HistosegError(f"{path}: mpp {mpp!r} is not positive; give the microns per pixel")
    if tile < 16 or tile % 16:
        raise HistosegError(f"tile={tile}: not a positive multiple of 16; use e.g. 256")
    is_rgb = len(shape) == 3
    if colormap is not None and is_rgb:
        raise HistosegError(f"{path}: a colormap applies to 2-D label maps only; drop it for RGB images")
    if compression is None:
        compression = "jpeg" if is_rgb else "deflate"
    if compression not in ("jpeg", "deflate", "none"):
        raise HistosegError(f"compression={compression!r} is unknown; use 'jpeg', 'deflate' or 'none'")
    if compression == "jpeg" and colormap is not None:
        raise HistosegError(
            f"{path}: label maps with a colormap need lossless compression; use compression='deflate'"
        )
    if interpolation is None:
        interpolation = "nearest" if colormap is not None else "mean"
    if interpolation not in ("mean", "nearest"):
        raise HistosegError(f"interpolation={interpolation!r} is unknown; use 'mean' or 'nearest'")
    return shape, is_rgb, compression, interpolation


def _tiff_page_options(
    compression: str, colormap: Any, is_rgb: bool, jpeg_quality: int
) -> dict[str, Any]:
    """The ``tifffile`` keyword arguments of every page: compression and photometric interpretation."""
    kwargs: dict[str, Any] = {}
    if compression == "jpeg":
        kwargs["compression"] = "jpeg"
        kwargs["compressionargs"] = {"level": int(jpeg_quality)}
    elif compression == "deflate":
        kwargs["compression"] = "zlib"
        kwargs["compressionargs"] = {"level": 6}
    if colormap is not None:
        kwargs["photometric"] = "palette"
        kwargs["colormap"] = _colormap_tag(np.asarray(colormap))
    else:
        kwargs["photometric"] = "rgb" if is_rgb else "minisblack"
    return kwargs


def write_pyramid_tiff(
    path: str | os.PathLike[str],
    image: ArrayLike,
    mpp: float,
    *,
    tile: int = 256,
    min_level_size: int = 512,
    compression: Literal["jpeg", "deflate", "none"] | None = None,
    interpolation: Literal["mean", "nearest"] | None = None,
    colormap: np.ndarray | Sequence[Sequence[int]] | None = None,
    description: str | None = None,
    jpeg_quality: int = 90,
) -> None:
    """Write an image or label map as a tiled pyramidal TIFF with its resolution.

    Args:
        path: Output ``.tif`` path (written atomically).
        image: Array-like of shape (H, W) or (H, W, 3), dtype uint8, sliceable as
            ``image[y0:y1, x0:x1]``: an ``np.ndarray`` or an ``np.memmap`` (never read whole).
        mpp: Level-0 resolution in microns per pixel (> 0).
        tile: Tile side in pixels (a multiple of 16).
        min_level_size: Add levels (factor 2 each) until the longest side is at most this.
        compression: ``"jpeg"`` (lossy; default for RGB), ``"deflate"`` (lossless; default
            for 2-D arrays and required for label maps) or ``"none"``.
        interpolation: How reduced levels are made: ``"mean"`` (2 x 2 box mean, for images)
            or ``"nearest"`` (every second pixel, for label maps: no new class values).
            Default: ``"nearest"`` when ``colormap`` is given, else ``"mean"``.
        colormap: Optional (N <= 256, 3) uint8 colour table of a 2-D label map; the file is
            then a palette TIFF (viewers show the colours; readers get the indices).
        description: Optional text stored as level 0's ImageDescription (OpenSlide shows it
            as ``openslide.comment``).
        jpeg_quality: JPEG quality 1-100 when ``compression == "jpeg"``.

    Raises:
        HistosegError: invalid shape, dtype, mpp or option, or the file cannot be written.
    """
    shape, is_rgb, codec, reduce = _check_pyramid_options(path, image, mpp, tile, compression, interpolation, colormap)
    kwargs = _tiff_page_options(codec, colormap, is_rgb, jpeg_quality)

    shapes = level_shapes(shape[0], shape[1], min_level_size)
    samples = 3 if is_rgb else 1
    raw_bytes = sum(h * w * samples for h, w in shapes)
    bigtiff = raw_bytes > 2**31 if compression != "none" else raw_bytes > 2**32 - 2**26

    final = Path(path)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(final))
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix=".pyramid-", dir=final.parent))
        try:
            writer = stack.enter_context(tifffile.TiffWriter(tmp, bigtiff=bigtiff))
            level: ArrayLike = image
            for index, (h, w) in enumerate(shapes):
                if index > 0:
                    reduced = np.lib.format.open_memmap(
                        Path(scratch) / f"level{index}.npy",
                        mode="w+",
                        dtype=np.uint8,
                        shape=(h, w, 3) if is_rgb else (h, w),
                    )
                    _reduce_level(level, reduced, reduce)
                    level = reduced
                # pixels per centimetre of this level: 1e4 um / (level mpp = mpp * downsample)
                x_res = 1e4 / (float(mpp) * shape[1] / w)
                y_res = 1e4 / (float(mpp) * shape[0] / h)
                writer.write(
                    _iter_tiles(level, tile),
                    shape=(h, w, 3) if is_rgb else (h, w),
                    dtype=np.uint8,
                    tile=(tile, tile),
                    resolution=(x_res, y_res),
                    resolutionunit="CENTIMETER",
                    subfiletype=1 if index else 0,
                    description=description if index == 0 else None,
                    metadata=None,
                    software="histoseg",
                    **kwargs,
                )
            del level
        except OSError as exc:
            raise HistosegError(
                f"{final}: cannot write the TIFF ({exc.strerror or exc}); check the folder"
            ) from None


def read_tiff_mpp(path: str | os.PathLike[str], page: int = 0) -> float | None:
    """Return the mpp of a TIFF page from its resolution tags, or None when it has none.

    Args:
        path: TIFF file.
        page: Page (IFD) index; 0 is level 0.

    Returns:
        Microns per pixel along x (``1e4 / XResolution`` for CENTIMETER,
        ``25400 / XResolution`` for INCH), or None without usable tags.

    Raises:
        HistosegError: the file is missing or not a readable TIFF.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[page].tags  # type: ignore[union-attr]
            xres = tags.get("XResolution")
            unit = tags.get("ResolutionUnit")
            if xres is None or unit is None:
                return None
            num, den = xres.value
            unit_value = int(unit.value)
    except (OSError, tifffile.TiffFileError, IndexError) as exc:
        raise HistosegError(f"{path}: cannot read TIFF resolution tags ({exc}); check the file") from None
    if not num or not den:
        return None
    per_unit = num / den
    if unit_value == 3:  # CENTIMETER
        return 1e4 / per_unit
    if unit_value == 2:  # INCH
        return 25400.0 / per_unit
    return None


def describe_label_map(classes: Sequence[str], colormap: np.ndarray | Sequence[Sequence[int]]) -> str:
    """Return a JSON ImageDescription for a label map: class names and their colours.

    Args:
        classes: Class names in index order.
        colormap: (N, 3) uint8 colours, row ``i`` for class ``i``.

    Returns:
        ``{"histoseg": "label-map", "classes": [...], "colors": [[r, g, b], ...]}`` as text.
    """
    colours = np.asarray(colormap, dtype=np.uint8)[: len(classes)].tolist()
    return json.dumps({"histoseg": "label-map", "classes": list(classes), "colors": colours})
