"""The reader backends behind :class:`histoseg.io.slide.Slide`: OpenSlide, tifffile, Pillow.

Each backend opens one file and reads windows of it: ``read(x, y, w, h, level)`` with a level-0
origin and a size at ``level``, as (h, w, 3) uint8 RGB, white (255) outside the image; plus the
level geometry, the level-0 mpp from the file's metadata (or None) and the stored tile height of
a level. :func:`choose_backend` picks one by suffix and content; :func:`check_tiff_complete`
refuses a truncated TIFF-based file before any reader sees it.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from histoseg.errors import SlideError
from histoseg.io.pixels import check_dtype, pil_to_rgb, to_rgb_uint8

__all__ = [
    "IMAGE_SUFFIXES",
    "OPENSLIDE_SUFFIXES",
    "TIFF_BASED_SUFFIXES",
    "TIFF_SUFFIXES",
    "Backend",
    "MppSource",
    "check_tiff_complete",
    "choose_backend",
]

OPENSLIDE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".dcm"}
TIFF_SUFFIXES = {".tif", ".tiff", ".btf", ".qptiff"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}

MppSource = Literal["override", "metadata", "tiff-resolution"]

Image.MAX_IMAGE_PIXELS = None  # slides are large by nature; we never decode them whole with Pillow.


def _resolution_to_mpp(resolution: Any, unit: int | None) -> float | None:
    """Convert a TIFF X/YResolution tag value and ResolutionUnit to mpp (None when absent/invalid).

    Values outside 0.01-100 microns per pixel (72/96/300 dpi defaults of image tools, unit mistakes)
    are not taken as the slide's resolution; :func:`_tiff_tag_mpp` keeps what the tag said, so the
    message can name it.
    """
    mpp = _tiff_tag_mpp(resolution, unit)
    return mpp if mpp is not None and 0.01 <= mpp <= 100.0 else None


def _tiff_tag_mpp(resolution: Any, unit: int | None) -> float | None:
    """The mpp a TIFF X/YResolution tag and ResolutionUnit say, plausible or not (None: absent/invalid)."""
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
    return mpp if math.isfinite(mpp) else None


class Backend:
    """Interface of the reader backends."""

    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp: float | None
    mpp_source: MppSource
    metadata_mpp: float | None = None
    """What the metadata said when it is not taken as the resolution (``mpp`` None): an implausible value."""

    def __init__(self, path: Path) -> None:  # pragma: no cover - interface
        """Open ``path`` (each backend opens its own format)."""
        raise NotImplementedError

    def read(self, x: int, y: int, w: int, h: int, level: int) -> np.ndarray:  # pragma: no cover - interface
        """Read a window (level-0 origin, size at ``level``); (h, w, 3) uint8, white outside."""
        raise NotImplementedError

    def stored_tile_height(self, level: int) -> int | None:
        """Rows the file stores (and decodes) together at ``level``: tile height, or None if unknown."""
        return None

    def close(self) -> None:
        """Release file handles."""


class OpenSlideBackend(Backend):
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


class TiffBackend(Backend):
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
        self._arrays: list[Any] = []
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
            ome_unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
            if match and (ome_unit is None or ome_unit.group(1) in ("µm", "um", "\u00b5m")):
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
        value = res_tag.value if res_tag is not None else None
        mpp = _resolution_to_mpp(value, unit)
        if mpp is None:
            self.metadata_mpp = _tiff_tag_mpp(value, unit)
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


class ImageBackend(Backend):
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


def check_tiff_complete(path: Path) -> None:
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


def choose_backend(path: Path) -> type[Backend]:
    """The backend class for ``path``: Pillow for images, tifffile for generic TIFF, else OpenSlide.

    Raises:
        SlideError: a format none of them reads.
    """
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return ImageBackend
    import openslide

    vendor = None
    try:
        vendor = openslide.OpenSlide.detect_format(str(path))
    except Exception:  # noqa: BLE001 - detection failure just means "not an OpenSlide vendor format"
        vendor = None
    if suffix in TIFF_SUFFIXES and vendor in (None, "generic-tiff"):
        return TiffBackend
    if vendor is not None:
        return OpenSlideBackend
    if suffix in TIFF_SUFFIXES:
        return TiffBackend
    raise SlideError(
        f"{path}: not a slide format histoseg can read (OpenSlide formats, TIFF/OME-TIFF, PNG, JPEG); "
        "convert it or remove it from the slide list"
    )
