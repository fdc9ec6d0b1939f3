"""One small interface over whole-slide image readers.

:class:`Slide` opens vendor formats (.svs, .ndpi, .mrxs, .scn, ...) with OpenSlide, generic
TIFF / OME-TIFF pyramids with tifffile (windowed reads through its Zarr store, never a whole
level), and small PNG/JPEG images with Pillow. Whatever the backend:

- coordinates ``(x, y)`` are **level-0 pixels**; sizes are pixels at the level being read;
- the resolution is the level-0 **mpp** (microns per pixel) from the file's metadata
  (``openslide.mpp-x``, Aperio ``MPP =``, OME ``PhysicalSizeX``, TIFF resolution tags) or an
  explicit override; a slide without one is an error unless overridden;
- regions outside the slide read as white glass (255).

The readers themselves are in :mod:`histoseg.io.backends`; this module holds the slide-level
checks (path, mpp), :class:`Slide` and :func:`find_slides`.

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
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from histoseg.errors import ConfigError, SlideError
from histoseg.io.backends import (
    IMAGE_SUFFIXES,
    OPENSLIDE_SUFFIXES,
    TIFF_BASED_SUFFIXES,
    TIFF_SUFFIXES,
    MppSource,
    check_tiff_complete,
    choose_backend,
)

SLIDE_SUFFIXES = OPENSLIDE_SUFFIXES | TIFF_SUFFIXES | IMAGE_SUFFIXES
"""File suffixes that :func:`find_slides` treats as slides."""

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


def check_mpp_override(value: Any, model_mpp: float | None = None) -> float:
    """The one check of the ``--mpp`` override, run once where a route starts (quantify, sample).

    A plausible resolution (:func:`check_mpp`), and not so coarse that the model's label map,
    made at ``model_mpp``, would be upsampled more than 8x.

    Args:
        value: The ``--mpp`` value.
        model_mpp: The resolution the model runs at (microns per pixel), or None (not known yet).

    Raises:
        ConfigError: naming ``--mpp`` and its value.
    """
    mpp = check_mpp(value, "--mpp")
    if model_mpp is not None and mpp > 8 * model_mpp:
        raise ConfigError(
            f"--mpp {mpp:g}: slides this coarse would be upsampled {mpp / model_mpp:.0f}x to the model's "
            f"{model_mpp:g} microns per pixel (the label map is made at that resolution); "
            "check the value, or use a model trained at a coarser resolution"
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


class Slide:
    """A whole-slide image opened for windowed reading at a physical resolution.

    Args:
        path: Slide file (.svs, .ndpi, .mrxs, .scn, .tif/.tiff/OME-TIFF, .png, .jpg, ...).
        mpp: Level-0 resolution in microns per pixel; overrides the file's metadata. Required for
            files that carry none (PNG/JPEG, TIFFs without resolution tags). Checked where it was
            given, once (the slide table's reader, :func:`check_mpp_override`), not here again.

    Raises:
        SlideError: the file is missing, unreadable, or has no mpp and none was given.
    """

    def __init__(self, path: str | os.PathLike[str], mpp: float | None = None) -> None:
        self.path = Path(path)
        check_slide_path(self.path)
        backend_cls = choose_backend(self.path)
        if self.path.suffix.lower() in TIFF_BASED_SUFFIXES:
            check_tiff_complete(self.path)
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
            said = getattr(self._backend, "metadata_mpp", None)
            if said is not None:
                low, high = MPP_RANGE
                raise SlideError(
                    f"{self.path}: its metadata says {said:g} microns per pixel "
                    f"({self._backend.mpp_source}), "
                    f"not a plausible slide resolution ({low:g}-{high:g}: a unit mistake or an image tool's "
                    "dpi default); pass the true value (e.g. --mpp 0.5, or mpp: in the slide table)"
                )
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


COMPANION_SUFFIXES = (
    ".labels.tif",
    ".labels.png",
    ".overlay.png",
    ".geojson",
    ".design.json",
    ".points.csv",
)
"""Names histoseg writes beside slides (label maps and masks, overlays, GeoJSON, point designs)."""

COMPANION_NAMES = frozenset({"manifest.json", "slides.csv", "report.csv", "report.json", "index.html", "cohort.png"})
"""Whole file names histoseg writes into a slide or output folder (synthetic manifest, slide table, report)."""


def is_companion_file(name: str) -> bool:
    """Whether a folder entry is one of histoseg's own files, never a slide: a label map or mask
    (``*.labels.tif``), an overlay, GeoJSON, a point design or points file, the synthetic
    ``manifest.json`` and ``slides.csv``, or a report. A folder given as ``--slides`` skips them."""
    lower = name.lower()
    return lower in COMPANION_NAMES or lower.endswith(COMPANION_SUFFIXES) or ".points.round" in lower


def _listed(path: Path, in_folder: bool) -> bool:
    """Whether a folder entry or glob match is something the user named as a slide.

    Files (also pipes and devices), symbolic links (also dangling or looping ones: they are
    reported, not skipped) and folders named like slides (``x.svs/``) are; hidden files and other
    folders are not.
    """
    if in_folder and path.name.startswith("."):
        return False
    if in_folder and is_companion_file(path.name):
        return False
    if path.is_symlink() or not path.is_dir():  # files, links, pipes and devices
        return path.is_symlink() or path.exists()
    return path.suffix.lower() in SLIDE_SUFFIXES


def find_slides(pattern: str | os.PathLike[str]) -> list[Path]:
    """Expand a slide path, folder or glob into a sorted list of files.

    A folder lists every file in it (not only known slide suffixes, so that a non-slide file is
    reported, not silently skipped) except histoseg's own files (:func:`is_companion_file`: label
    maps and masks ``*.labels.tif``, overlays, GeoJSON, point files, ``manifest.json``,
    ``slides.csv``, reports); a glob expands to the files it matches. Dangling or looping
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
