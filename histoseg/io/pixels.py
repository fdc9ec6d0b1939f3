"""Pixel formats as they come from real scanners and image tools, converted to (H, W, 3) uint8 RGB.

Every reader backend of :class:`histoseg.io.slide.Slide` goes through these functions, so a slide is
either converted correctly or refused with one line (:class:`~histoseg.errors.SlideError`); it is
never silently clipped to white:

- 8-bit grey, palette, bilevel, RGB: as is (grey repeated, palette looked up);
- 16-bit channels: scaled to 8 bits (``value / 257``, so 65535 -> 255), not clipped;
- float channels: ``[0, 1]`` scaled by 255, ``[0, 255]`` kept; anything else is refused;
- alpha (RGBA, LA, palette transparency): composited on white glass;
- CMYK: converted (``R = (255 - C)(255 - K) / 255``); TIFF "min-is-white" grey: inverted;
- other integer types (32-bit, signed) and unknown modes: refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from histoseg.errors import SlideError

_FIX = "save it as an 8- or 16-bit RGB or greyscale image"


def check_dtype(path: Path, dtype: np.dtype[Any]) -> None:
    """Refuse sample types that cannot be converted without guessing their range.

    Raises:
        SlideError: not bool, uint8, uint16 or floating point.
    """
    if dtype == np.bool_ or dtype in (np.uint8, np.uint16) or np.issubdtype(dtype, np.floating):
        return
    raise SlideError(f"{path}: {dtype} pixel samples are not supported; {_FIX}")


def to_rgb_uint8(
    data: np.ndarray,
    photometric: str | None = None,
    colormap: np.ndarray | None = None,
    path: Path | None = None,
) -> np.ndarray:
    """Convert (H, W) or (H, W, S) samples to (H, W, 3) uint8 RGB.

    Args:
        data: Samples, S = 1 (grey), 2 (grey + alpha), 3 (RGB), 4 (RGBA or CMYK).
        photometric: TIFF photometric name (``minisblack``, ``miniswhite``, ``rgb``, ``palette``,
            ``separated`` = CMYK); None = infer from the channel count (4 = RGBA).
        colormap: (3, N) palette (TIFF ColorMap, 16-bit) for ``palette`` images.
        path: The file, named in errors.

    Raises:
        SlideError: a sample type or value range that cannot be converted.
    """
    where = path if path is not None else Path("image")
    if photometric == "palette" and colormap is not None:
        lut = _to_uint8(np.asarray(colormap).T, where)  # (N, 3)
        index = np.asarray(data if data.ndim == 2 else data[..., 0]).astype(np.intp)
        return lut[np.clip(index, 0, len(lut) - 1)]
    if data.ndim == 2:
        data = data[..., None]
    samples = data.shape[-1]
    if photometric == "separated" and samples >= 4:
        cmyk = _to_uint8(data[..., :4], where).astype(np.float32)
        white = 255.0 - cmyk[..., 3:4]
        return np.rint((255.0 - cmyk[..., :3]) * white / 255.0).astype(np.uint8)
    alpha = None
    if samples in (2, 4):
        opacity = _to_uint8(data[..., -1:], where)
        if not bool((opacity == 255).all()):  # fully opaque (inside a scan): nothing to composite
            alpha = opacity.astype(np.float32) / 255.0
        data = data[..., :-1]
    rgb = _to_uint8(data, where)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    rgb = rgb[..., :3]
    if photometric == "miniswhite":
        rgb = 255 - rgb
    if alpha is not None:
        rgb = np.rint(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def _to_uint8(data: np.ndarray, path: Path) -> np.ndarray:
    """Scale one array of samples to uint8 (16-bit by 1/257, floats by their [0, 1] or [0, 255] range)."""
    if data.dtype == np.uint8:
        return data
    if data.dtype == np.bool_:
        return data.astype(np.uint8) * 255
    if data.dtype == np.uint16:
        return ((data.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(data.dtype, np.floating):
        finite = data[np.isfinite(data)]
        low = float(finite.min()) if finite.size else 0.0
        high = float(finite.max()) if finite.size else 0.0
        if low < 0 or high > 255:
            raise SlideError(
                f"{path}: float pixel values span [{low:g}, {high:g}], not [0, 1] or [0, 255]; {_FIX}"
            )
        scale = 255.0 if high <= 1.0 else 1.0
        return np.rint(np.nan_to_num(data, nan=1.0 / scale) * scale).clip(0, 255).astype(np.uint8)
    if (
        np.issubdtype(data.dtype, np.integer)
        and data.size
        and 0 <= int(data.min())
        and int(data.max()) <= 255
    ):
        return data.astype(np.uint8)
    raise SlideError(f"{path}: {data.dtype} pixel samples are not supported; {_FIX}")


def pil_to_rgb(image: Image.Image, path: Path) -> np.ndarray:
    """A decoded Pillow image as (H, W, 3) uint8 RGB (see the module docstring for each mode).

    Raises:
        SlideError: a mode Pillow cannot convert, or 32-bit values beyond 16 bits.
    """
    mode = image.mode
    if mode in ("RGB", "L", "1"):
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    if mode.startswith("I;16") or mode == "I":
        data = np.asarray(image)
        if mode == "I":
            high = int(data.max()) if data.size else 0
            if int(data.min(initial=0)) < 0 or high > 65535:
                raise SlideError(f"{path}: 32-bit pixel values up to {high} are not supported; {_FIX}")
            # Pillow opens 16-bit greyscale files as 32-bit "I"; their samples are 16-bit.
            data = data.astype(np.uint16) if high > 255 else data.astype(np.uint8)
        return to_rgb_uint8(data.astype(np.uint16) if mode != "I" else data, path=path)
    if mode == "F":
        return to_rgb_uint8(np.asarray(image, dtype=np.float32), path=path)
    if mode == "CMYK":
        return to_rgb_uint8(np.asarray(image), photometric="separated", path=path)
    try:
        rgba = image.convert("RGBA")  # P (with transparency), LA, PA, RGBA, YCbCr, ...
    except (ValueError, OSError):
        raise SlideError(f"{path}: image mode {mode!r} cannot be converted to RGB; {_FIX}") from None
    return to_rgb_uint8(np.asarray(rgba), path=path)
