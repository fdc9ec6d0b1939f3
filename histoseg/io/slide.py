"""One small interface over whole-slide image readers.

:class:`Slide` opens vendor formats (.svs, .ndpi, .mrxs, .scn, ...) with OpenSlide, generic
TIFF / OME-TIFF pyramids with tifffile (windowed reads through its Zarr store, never a whole
level), and small PNG/JPEG images with Pillow. Whatever the backend:

- coordinates ``(x, y)`` are **level-0 pixels**; sizes are pixels at the level being read;
- the resolution is the level-0 **mpp** (microns per pixel) from the file's metadata
  (``openslide.mpp-x``, Aperio ``MPP =``, OME ``PhysicalSizeX``, TIFF resolution tags) or an
  explicit override; a slide without one is an error unless overridden;
- regions outside the slide read as white glass (255).

Example:
    >>> from histoseg.io.slide import Slide
    >>> with Slide("slide.svs") as slide:  # doctest: +SKIP
    ...     level = slide.best_level_for_mpp(2.0)
    ...     tile = slide.read_at_mpp(0, 0, 512, 512, mpp=2.0)  # (512, 512, 3) uint8
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from histoseg.errors import ConfigError, SlideError
from histoseg.io.pixels import check_dtype, pil_to_rgb, to_rgb_uint8

OPENSLIDE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".dcm"}
TIFF_SUFFIXES = {".tif", ".tiff", ".btf", ".qptiff"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
SLIDE_SUFFIXES = OPENSLIDE_SUFFIXES | TIFF_SUFFIXES | IMAGE_SUFFIXES
"""File suffixes that :func:`find_slides` treats as slides."""

MppSource = Literal["override", "metadata", "tiff-resolution"]

Image.MAX_IMAGE_PIXELS = None  # slides are large by nature; we never decode them whole with Pillow.


def _resolution_to_mpp(resolution: Any, unit: int | None) -> float | None:
    """Convert a TIFF X/YResolution tag value and ResolutionUnit to mpp (None when absent/invalid)."""
    if resolution is None:
        return None
    if isinstance(resolution, tuple):
        num, den = resolution
        value = num / den if den else 0.0
    else:
        value = float(resolution)
    if value <= 0:
        return None
    if unit == 3:  # centimetre
        mpp = 1e4 / value
    elif unit == 2:  # inch
        mpp = 25400.0 / value
    else:
        return None
    # 72/96/300 dpi defaults written by image tools are not microscope resolutions.
    return mpp if 0.01 <= mpp <= 100.0 else None


MPP_RANGE = (0.05, 100.0)
"""Accepted level-0 resolutions in microns per pixel. 0.05 is finer than any optical microscope
resolves (a 100x oil objective, NA 1.4, resolves about 0.2 um, and scanners sample it at 0.1-0.25);
100 is a 0.1x macro photograph of the whole glass slide. Values outside are unit mistakes (nm, mm,
pixels per micron) or screen DPI defaults, and would make the label map absurdly small or large."""


def check_mpp(value: Any, where: str) -> float:
    """``value`` as a float within :data:`MPP_RANGE`.

    Args:
        value: The mpp given by the user (option, slide table cell, override).
        where: The option or ``file:line`` named in the error.

    Raises:
        ConfigError: not a number, not finite, or outside 0.05-100 microns per pixel.
    """
    try:
        mpp = float(value)
    except (TypeError, ValueError):
        mpp = math.nan
    low, high = MPP_RANGE
    if not (math.isfinite(mpp) and low <= mpp <= high):
        raise ConfigError(
            f"{where} {value}: must be a positive resolution between {low:g} and {high:g} microns per pixel "
            "(0.25 at 40x, 0.5 at 20x, 1 at 10x); give the slide's microns per pixel, not nm, mm or dpi"
        )
    return mpp


def check_slide_path(path: Path) -> None:
    """Refuse a path that is not a readable slide file, naming why (before any reader sees it).

    Raises:
        SlideError: missing, dangling or looping symbolic link, a folder, not a regular file,
            empty, or not readable.
    """
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SlideError(f"{path}: symbolic link loop; point the link at the slide file") from None
        if path.is_symlink():
            target = os.readlink(path)
            raise SlideError(
                f"{path}: dangling symbolic link (its target {target} does not exist); "
                "fix the link or copy the slide"
            ) from None
        if exc.errno == errno.ENOENT:
            raise SlideError(f"{path}: slide file not found; check the path") from None
        raise SlideError(f"{path}: cannot open ({exc.strerror}); check the path and permissions") from None
    if stat.S_ISDIR(info.st_mode):
        if path.suffix.lower() == ".mrxs":
            return
        raise SlideError(f"{path}: is a folder, not a slide file; give a slide file or a glob")
    if not stat.S_ISREG(info.st_mode):
        raise SlideError(f"{path}: not a regular file (a device or pipe); give a slide file")
    if info.st_size == 0:
        raise SlideError(f"{path}: empty file (0 bytes); re-export or re-copy the slide")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise SlideError(
            f"{path}: cannot open ({exc.strerror}); check the file's permissions (chmod a+r)"
        ) from None


class _Backend:
    """Interface of the reader backends (internal)."""

    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp: float | None
    mpp_source: MppSource

    def read(self, x: int, y: int, w: int, h: int, level: int) -> np.ndarray:  # pragma: no cover - interface
        """Read a window (level-0 origin, size at ``level``); (h, w, 3) uint8, white outside."""
        raise NotImplementedError

    def stored_tile_height(self, level: int) -> int | None:
        """Rows the file stores (and decodes) together at ``level``: tile height, or None if unknown."""
        return None

    def close(self) -> None:
        """Release file handles."""


class _OpenSlideBackend(_Backend):
    def __init__(self, path: Path) -> None:
        import openslide

        self._path = path
        self._slide = openslide.OpenSlide(str(path))
        self.level_dimensions = [tuple(map(int, d)) for d in self._slide.level_dimensions]  # type: ignore[misc]
        self.level_downsamples = [float(d) for d in self._slide.level_downsamples]
        props = self._slide.properties
        mpp = None
        for key in ("openslide.mpp-x", "aperio.MPP"):
            try:
                value = float(props.get(key, "nan"))
            except ValueError:
                continue
            if math.isfinite(value) and value > 0:
                mpp = value
                break
        self.mpp = mpp
        self.mpp_source = "metadata"

    def read(self, x: int, y: int, w: int, h: int, level: int) -> np.ndarray:
        region = self._slide.read_region((int(x), int(y)), level, (int(w), int(h)))
        # RGBA over white (transparent outside the scanned area), as any RGBA image.
        return to_rgb_uint8(np.asarray(region, dtype=np.uint8), "rgb", path=self._path)

    def stored_tile_height(self, level: int) -> int | None:
        value = self._slide.properties.get(f"openslide.level[{level}].tile-height")
        return int(value) if value is not None and str(value).isdigit() else None

    def close(self) -> None:
        self._slide.close()


class _TiffBackend(_Backend):
    def __init__(self, path: Path) -> None:
        import tifffile
        import zarr

        self._path = path
        self._tif = tifffile.TiffFile(str(path))
        series = self._tif.series[0]
        check_dtype(path, np.dtype(series.dtype))
        photometric = getattr(series.pages[0], "photometric", None) if series.pages else None
        self._photometric = photometric.name.lower() if photometric is not None else None
        levels = list(series.levels) if series.levels else [series]
        self._arrays = []
        self.level_dimensions = []
        self._axes: list[str] = []
        self._pages = []
        for index, level in enumerate(levels):
            axes = level.axes
            if "Y" not in axes or "X" not in axes:
                raise SlideError(
                    f"{path}: TIFF series has no Y/X image axes; save it as an RGB image or pyramid"
                )
            shape = dict(zip(axes, level.shape, strict=True))
            self.level_dimensions.append((int(shape["X"]), int(shape["Y"])))
            self._axes.append(axes)
            self._arrays.append(zarr.open(series.aszarr(level=index), mode="r"))
            self._pages.append(level.pages[0] if level.pages else None)
        width0 = self.level_dimensions[0][0]
        self.level_downsamples = [width0 / d[0] for d in self.level_dimensions]
        self.mpp, self.mpp_source = self._find_mpp()

    def _find_mpp(self) -> tuple[float | None, MppSource]:
        tif = self._tif
        if tif.is_ome and tif.ome_metadata:
            match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
            unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
            if match and (unit is None or unit.group(1) in ("µm", "um", "\u00b5m")):
                return float(match.group(1)), "metadata"
        page = tif.pages.first
        description = page.description or ""
        match = re.search(r"MPP\s*=\s*([0-9.]+)", description)
        if match and float(match.group(1)) > 0:
            return float(match.group(1)), "metadata"
        tags = page.tags
        unit_tag = tags.get("ResolutionUnit")
        res_tag = tags.get("XResolution")
        unit = int(unit_tag.value) if unit_tag is not None else None
        mpp = _resolution_to_mpp(res_tag.value if res_tag is not None else None, unit)
        return mpp, "tiff-resolution"

    def read(self, x: int, y: int, w: int, h: int, level: int) -> np.ndarray:
        ds = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        x0 = int(math.floor(x / ds))
        y0 = int(math.floor(y / ds))
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + w, lw), min(y0 + h, lh)
        if sx1 <= sx0 or sy1 <= sy0:
            return np.full((h, w, 3), 255, dtype=np.uint8)
        axes = self._axes[level]
        index: list[Any] = []
        for axis in axes:
            if axis == "Y":
                index.append(slice(sy0, sy1))
            elif axis == "X":
                index.append(slice(sx0, sx1))
            elif axis in ("S", "C") and axes.index(axis) > axes.index("X"):
                index.append(slice(None))
            else:
                index.append(0 if axis not in ("S", "C") else slice(0, 3))
        data = np.asarray(self._arrays[level][tuple(index)])
        if data.ndim == 3 and data.shape[0] in (3, 4) and data.shape[-1] not in (3, 4):
            data = np.moveaxis(data, 0, -1)
        page = self._pages[level]
        rgb = to_rgb_uint8(data, self._photometric, getattr(page, "colormap", None), self._path)
        if (sx0, sy0, sx1, sy1) == (x0, y0, x0 + w, y0 + h):  # all inside: no white frame to paste into
            return np.ascontiguousarray(rgb)
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb
        return out

    def stored_tile_height(self, level: int) -> int | None:
        page = self._pages[level]
        if page is None:
            return None
        rows = (
            getattr(page, "tilelength", 0)
            if getattr(page, "is_tiled", False)
            else getattr(page, "rowsperstrip", 0)
        )
        return int(rows) if rows and int(rows) > 0 else None

    def close(self) -> None:
        self._tif.close()


class _ImageBackend(_Backend):
    def __init__(self, path: Path) -> None:
        with Image.open(path) as image:
            image.load()
            self._data = pil_to_rgb(image, path)
        h, w = self._data.shape[:2]
        self.level_dimensions = [(w, h)]
        self.level_downsamples = [1.0]
        self.mpp = None  # PNG/JPEG dpi fields are screen defaults, not microscope resolutions
        self.mpp_source = "metadata"

    def read(self, x: int, y: int, w: int, h: int, level: int) -> np.ndarray:
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        ih, iw = self._data.shape[:2]
        sx0, sy0 = max(x, 0), max(y, 0)
        sx1, sy1 = min(x + w, iw), min(y + h, ih)
        if sx1 > sx0 and sy1 > sy0:
            out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = self._data[sy0:sy1, sx0:sx1]
        return out


TIFF_BASED_SUFFIXES = TIFF_SUFFIXES | {".svs", ".ndpi", ".scn", ".bif", ".svslide"}


def _check_tiff_complete(path: Path) -> None:
    """Raise SlideError when a TIFF-based slide's tiles point past the end of the file (truncated copy)."""
    import tifffile

    size = path.stat().st_size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tifffile.TiffFile(str(path)) as tif:
                end = 0
                for page in tif.pages:
                    offsets = getattr(page, "dataoffsets", ()) or ()
                    counts = getattr(page, "databytecounts", ()) or ()
                    for offset, count in zip(offsets, counts, strict=False):
                        if count:
                            end = max(end, int(offset) + int(count))
    except SlideError:
        raise
    except Exception:  # noqa: BLE001 - tifffile cannot parse it: leave the verdict to the reader
        return
    if end > size:
        raise SlideError(
            f"{path}: file is truncated ({size} bytes, but its image data runs to byte {end}); "
            "copy or export the slide again"
        )


def _choose_backend(path: Path) -> type[_Backend]:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return _ImageBackend
    import openslide

    vendor = None
    try:
        vendor = openslide.OpenSlide.detect_format(str(path))
    except Exception:  # noqa: BLE001 - detection failure just means "not an OpenSlide vendor format"
        vendor = None
    if suffix in TIFF_SUFFIXES and vendor in (None, "generic-tiff"):
        return _TiffBackend
    if vendor is not None:
        return _OpenSlideBackend
    if suffix in TIFF_SUFFIXES:
        return _TiffBackend
    raise SlideError(
        f"{path}: not a slide format histoseg can read (OpenSlide formats, TIFF/OME-TIFF, PNG, JPEG); "
        "convert it or remove it from the slide list"
    )


class Slide:
    """A whole-slide image opened for windowed reading at a physical resolution.

    Args:
        path: Slide file (.svs, .ndpi, .mrxs, .scn, .tif/.tiff/OME-TIFF, .png, .jpg, ...).
        mpp: Level-0 resolution in microns per pixel; overrides the file's metadata. Required for
            files that carry none (PNG/JPEG, TIFFs without resolution tags).

    Raises:
        SlideError: the file is missing, unreadable, or has no mpp and none was given.
    """

    def __init__(self, path: str | os.PathLike[str], mpp: float | None = None) -> None:
        self.path = Path(path)
        check_slide_path(self.path)
        if mpp is not None:
            mpp = check_mpp(mpp, f"{self.path}: mpp override")
        backend_cls = _choose_backend(self.path)
        if self.path.suffix.lower() in TIFF_BASED_SUFFIXES:
            _check_tiff_complete(self.path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._backend = backend_cls(self.path)
        except SlideError:
            raise
        except Exception as exc:  # noqa: BLE001 - any reader failure is an unreadable slide for the user
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SlideError(
                f"{self.path}: cannot read slide ({reason[:160]}); check that the file is complete and not corrupted"
            ) from None
        if mpp is not None:
            self.mpp: float = float(mpp)
            self.mpp_source: MppSource = "override"
        elif self._backend.mpp is not None:
            self.mpp = float(self._backend.mpp)
            self.mpp_source = self._backend.mpp_source
        else:
            self._backend.close()
            raise SlideError(
                f"{self.path}: the file has no resolution (microns per pixel) in its metadata; "
                "pass it explicitly (e.g. --mpp 0.5, or mpp: in the slide table)"
            )
        self.level_dimensions: list[tuple[int, int]] = list(self._backend.level_dimensions)
        self.level_downsamples: list[float] = list(self._backend.level_downsamples)

    # -- geometry -------------------------------------------------------------------------------
    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 size ``(width, height)`` in pixels."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_dimensions)

    def level_mpp(self, level: int) -> float:
        """Microns per pixel of ``level``."""
        return self.mpp * self.level_downsamples[level]

    def best_level_for_mpp(self, mpp: float) -> int:
        """The coarsest level whose resolution is at least as fine as ``mpp`` (1 % tolerance)."""
        best = 0
        for level in range(self.level_count):
            if self.level_mpp(level) <= mpp * 1.01:
                best = level
        return best

    def size_at_mpp(self, mpp: float) -> tuple[int, int]:
        """Slide size ``(width, height)`` in pixels at resolution ``mpp`` (rounded)."""
        scale = self.mpp / mpp
        w, h = self.dimensions
        return max(1, round(w * scale)), max(1, round(h * scale))

    def stored_tile_height(self, level: int) -> int | None:
        """Rows of ``level`` the file stores and decodes together (its tile height), None if unknown.

        Reading windows whose rows start on multiples of it decodes every stored tile once.
        """
        if not 0 <= level < self.level_count:
            return None
        try:
            return self._backend.stored_tile_height(level)
        except Exception:  # noqa: BLE001 - a hint only
            return None

    # -- reading --------------------------------------------------------------------------------
    def read_region(self, x: int, y: int, width: int, height: int, level: int = 0) -> np.ndarray:
        """Read a window of ``level``.

        Args:
            x: Left edge in level-0 pixels (may be negative or past the slide: padded with white).
            y: Top edge in level-0 pixels.
            width: Width in pixels at ``level``.
            height: Height in pixels at ``level``.
            level: Pyramid level.

        Returns:
            (height, width, 3) uint8 RGB.
        """
        if not 0 <= level < self.level_count:
            raise SlideError(
                f"{self.path}: level {level} out of range (slide has {self.level_count} levels); "
                f"use 0 to {self.level_count - 1}"
            )
        if width <= 0 or height <= 0:
            raise SlideError(
                f"{self.path}: region size must be positive, got {width} x {height}; read at least 1 x 1 pixels"
            )
        try:
            return self._backend.read(int(x), int(y), int(width), int(height), level)
        except SlideError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncated/corrupt tiles surface here
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SlideError(
                f"{self.path}: cannot read region at ({x}, {y}) level {level} ({reason[:160]}); "
                "the file may be truncated or corrupted"
            ) from None

    def read_at_mpp(self, x: int, y: int, width: int, height: int, mpp: float) -> np.ndarray:
        """Read a window at an arbitrary resolution.

        The slide is read at :meth:`best_level_for_mpp` and resampled (area-weighted bilinear) to
        exactly ``width x height`` pixels of ``mpp`` microns.

        Args:
            x: Left edge in level-0 pixels.
            y: Top edge in level-0 pixels.
            width: Output width in pixels at ``mpp``.
            height: Output height in pixels at ``mpp``.
            mpp: Output resolution in microns per pixel.

        Returns:
            (height, width, 3) uint8 RGB.
        """
        level = self.best_level_for_mpp(mpp)
        level_mpp = self.level_mpp(level)
        if abs(level_mpp - mpp) <= 0.01 * mpp:
            return self.read_region(x, y, width, height, level)
        scale = mpp / level_mpp
        read_w = max(1, math.ceil(width * scale))
        read_h = max(1, math.ceil(height * scale))
        region = self.read_region(x, y, read_w, read_h, level)
        # Resample the exact footprint (width*scale x height*scale level pixels) to the output grid.
        box = (0.0, 0.0, width * scale, height * scale)
        resized = Image.fromarray(region).resize((width, height), Image.Resampling.BILINEAR, box=box)
        return np.asarray(resized)

    def thumbnail(self, max_side: int = 2048, max_read_pixels: int = 4096 * 4096) -> tuple[np.ndarray, float]:
        """A low-resolution RGB image of the whole slide, read with bounded memory.

        Read from the coarsest level that is at least ``max_side`` on its long side, then resized.
        When that level has more than ``max_read_pixels`` pixels (a slide without a pyramid), the
        thumbnail is assembled from windows of at most about that many level pixels each.

        Args:
            max_side: Long side of the thumbnail in pixels.
            max_read_pixels: Largest level region read in one piece.

        Returns:
            ``(image, downsample)``: (h, w, 3) uint8 and its level-0 pixels per thumbnail pixel.
        """
        w0, h0 = self.dimensions
        target_ds = max(w0, h0) / max_side if max(w0, h0) > max_side else 1.0
        level = 0
        for candidate in range(self.level_count):
            if self.level_downsamples[candidate] <= target_ds * 1.01:
                level = candidate
        lw, lh = self.level_dimensions[level]
        out_w = max(1, round(w0 / target_ds))
        out_h = max(1, round(h0 / target_ds))
        ds = w0 / out_w
        if lw * lh > max_read_pixels:
            level_per_thumb = ds / self.level_downsamples[level]
            block = max(8, int(math.sqrt(max_read_pixels) / level_per_thumb))
            image = np.empty((out_h, out_w, 3), np.uint8)
            for ty in range(0, out_h, block):
                for tx in range(0, out_w, block):
                    bw, bh = min(block, out_w - tx), min(block, out_h - ty)
                    image[ty : ty + bh, tx : tx + bw] = self.read_at_mpp(
                        round(tx * ds), round(ty * ds), bw, bh, self.mpp * ds
                    )
            return image, ds
        region = self.read_region(0, 0, lw, lh, level)
        if (out_w, out_h) != (lw, lh):
            region = np.asarray(Image.fromarray(region).resize((out_w, out_h), Image.Resampling.BILINEAR))
        return region, ds

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the file."""
        self._backend.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return f"Slide({str(self.path)!r}, {w}x{h}, levels={self.level_count}, mpp={self.mpp:g} [{self.mpp_source}])"


def _listed(path: Path, in_folder: bool) -> bool:
    """Whether a folder entry or glob match is something the user named as a slide.

    Files (also pipes and devices), symbolic links (also dangling or looping ones: they are
    reported, not skipped) and folders named like slides (``x.svs/``) are; hidden files and other
    folders are not.
    """
    if in_folder and path.name.startswith("."):
        return False
    if path.is_symlink() or not path.is_dir():  # files, links, pipes and devices
        return path.is_symlink() or path.exists()
    return path.suffix.lower() in SLIDE_SUFFIXES


def find_slides(pattern: str | os.PathLike[str]) -> list[Path]:
    """Expand a slide path, folder or glob into a sorted list of files.

    A folder lists every file in it (not only known slide suffixes, so that a non-slide file is
    reported, not silently skipped); a glob expands to the files it matches. Dangling or looping
    symbolic links and folders named like slides are listed too, so that :class:`Slide` reports
    them by name.

    Raises:
        SlideError: an empty pattern, or nothing matches.
    """
    import glob

    text = str(pattern)
    if not text.strip():
        raise SlideError(
            "--slides '': empty slide path; give a slide file, a folder or a glob such as 'slides/*.svs'"
        )
    path = Path(text)
    if path.is_dir() and path.suffix.lower() not in SLIDE_SUFFIXES - {".mrxs"}:
        files = sorted(p for p in path.iterdir() if _listed(p, in_folder=True))
    elif any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if _listed(Path(p), in_folder=False))
    else:
        files = [path]
    if not files:
        raise SlideError(
            f"{text}: no slide files found; give a slide file, a folder or a glob such as 'slides/*.svs'"
        )
    return files
