"""Dense label masks: loading, value mapping, and resampling to a training resolution.

A *label mask* is the user's annotation: an image (PNG, palette PNG, TIFF) of integer values,
possibly smaller than its slide and placed at an offset (the FLASH tiles label only the centre
516 x 516 of a 640 x 640 image: offset (62, 62)). Each value is mapped to a class by a
``value_map`` (``{value: class name | "ignore"}``); values absent from the map are an error.

Classes that the annotation does not draw can be derived with a tissue test: ``white_value_map``
sends, for the listed values, the pixels that are white in the image (see
:func:`histoseg.io.tissue.white_pixels`: HSV saturation < 0.08 and value > 0.78, median-filtered
5 x 5) to another class. FLASH: value 0 is interstitium on tissue and ``other`` on white space.

:func:`dense_grid` is the ``dense`` label kind of :mod:`histoseg.labels.grid`.

Example:
    >>> import numpy as np
    >>> from histoseg.labels.dense import apply_value_map
    >>> apply_value_map(np.array([[0, 1], [7, 1]]), {0: 1, 1: 2, 7: 2}, source="m.png").tolist()
    [[1, 2], [2, 2]]
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from histoseg import IGNORE_INDEX
from histoseg.errors import LabelError

if TYPE_CHECKING:
    from histoseg.io.slide import Slide
    from histoseg.labels.types import GridOptions, SlideRecord

Image.MAX_IMAGE_PIXELS = None


def read_mask_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label mask file as integer values.

    PNG/BMP/TIFF with one channel (grey or palette: the palette *indices* are the values). An RGB
    file is an error: label masks store class values, not colours.

    Returns:
        (H, W) integer array (uint8 or uint16).

    Raises:
        LabelError: missing, unreadable, or not a single-channel image.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label mask not found; check the labels column of the slide table")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(str(path), key=0)
        else:
            with Image.open(path) as image:
                if image.mode in ("RGB", "RGBA", "CMYK"):
                    raise LabelError(
                        f"{path}: label mask is a colour ({image.mode}) image; save one class value per pixel "
                        "(grey or palette PNG/TIFF), or use scribble images for colour-coded labels"
                    )
                data = np.asarray(image)
    except LabelError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise LabelError(
            f"{path}: cannot read label mask ({str(exc)[:120]}); re-export it as PNG or TIFF"
        ) from None
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.integer):
        raise LabelError(
            f"{path}: label mask must be a single-channel integer image, got shape {data.shape} {data.dtype}; "
            "save one class value per pixel"
        )
    return data


def resolve_value_map(
    value_map: Mapping[int, str | int] | None, classes: Sequence[str], source: str = "value_map"
) -> dict[int, int]:
    """Turn ``{value: class name | index | "ignore"}`` into ``{value: class index | 255}``.

    ``None`` means identity for ``0..len(classes)-1`` (and 255 = unlabelled).

    Raises:
        LabelError: a class name is not in ``classes``.
    """
    if value_map is None:
        return {i: i for i in range(len(classes))} | {IGNORE_INDEX: IGNORE_INDEX}
    resolved: dict[int, int] = {IGNORE_INDEX: IGNORE_INDEX}
    for value, target in value_map.items():
        if isinstance(target, str) and target.lower() in ("ignore", "unlabelled", "unlabeled"):
            resolved[int(value)] = IGNORE_INDEX
        elif isinstance(target, str):
            if target not in classes:
                raise LabelError(
                    f"{source}: class {target!r} (for value {value}) is not one of the classes {list(classes)}; "
                    "fix the name or add the class"
                )
            resolved[int(value)] = list(classes).index(target)
        else:
            index = int(target)
            if not (0 <= index < len(classes) or index == IGNORE_INDEX):
                raise LabelError(
                    f"{source}: class index {index} for value {value} is out of range 0..{len(classes) - 1}"
                )
            resolved[int(value)] = index
    return resolved


def apply_value_map(values: np.ndarray, value_map: Mapping[int, int], source: str) -> np.ndarray:
    """Map raw mask values to class indices.

    Args:
        values: (H, W) integer mask.
        value_map: ``{value: class index or 255}`` (see :func:`resolve_value_map`).
        source: File name used in error messages.

    Returns:
        (H, W) uint8 class indices (255 = unlabelled).

    Raises:
        LabelError: the mask holds values that are not in the map.
    """
    present = np.unique(values)
    unknown = [int(v) for v in present if int(v) not in value_map]
    if unknown:
        raise LabelError(
            f"{source}: label values {unknown[:10]} are not in the value map {sorted(value_map)}; "
            "add them to data.labels.value_map (value: class name or 'ignore')"
        )
    lut = np.full(int(max(int(present.max()), 255)) + 1, IGNORE_INDEX, dtype=np.uint8)
    for value, cls in value_map.items():
        if value < lut.size:
            lut[value] = cls
    return lut[values]


def load_dense_labels(
    path: str | os.PathLike[str],
    classes: Sequence[str],
    *,
    image_size: tuple[int, int],
    value_map: Mapping[int, str | int] | None = None,
    offset: tuple[int, int] = (0, 0),
    white_value_map: Mapping[int, str] | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """Load a dense label mask as class indices in level-0 pixels of its slide.

    Args:
        path: Mask file.
        classes: Class names (index order).
        image_size: Level-0 slide size ``(width, height)``; the mask plus its offset must fit.
        value_map: ``{raw value: class name | "ignore"}``; None = values are class indices.
        offset: Level-0 ``(x, y)`` of the mask's top-left pixel in the slide.
        white_value_map: ``{raw value: class name}``: for these values, white pixels of the image
            get that class instead (tissue test in :mod:`histoseg.io.tissue`).
        image: (H, W, 3) uint8 slide pixels under the mask (same size as the mask), needed when
            ``white_value_map`` is given.

    Returns:
        (h, w) uint8 class indices (255 = unlabelled), covering level-0 ``[ox, ox + w) x [oy, oy + h)``.

    Raises:
        LabelError: wrong size, values missing from the value map, unknown class names.
    """
    raw = read_mask_file(path)
    h, w = raw.shape
    ox, oy = offset
    width, height = image_size
    if ox < 0 or oy < 0 or ox + w > width or oy + h > height:
        raise LabelError(
            f"{path}: label mask is {w} x {h} px at offset ({ox}, {oy}) but the slide is {width} x {height} px; "
            "give a mask of the slide's level-0 size or set its offset"
        )
    mapped = apply_value_map(raw, resolve_value_map(value_map, classes, source=str(path)), source=str(path))
    if white_value_map:
        if image is None or image.shape[:2] != raw.shape:
            raise ValueError("white_value_map needs the image pixels under the mask")
        from histoseg.io.tissue import white_pixels

        white = white_pixels(image)
        targets = resolve_value_map(
            {int(k): v for k, v in white_value_map.items()}, classes, source="white_value_map"
        )
        for value, cls in targets.items():
            if value == IGNORE_INDEX:
                continue
            mapped[(raw == value) & white] = cls
    return mapped


def resample_labels(
    labels: np.ndarray,
    origin: tuple[float, float],
    scale: float,
    out_origin: tuple[float, float],
    out_shape: tuple[int, int],
) -> np.ndarray:
    """Nearest-neighbour resampling of a label grid onto another grid.

    Pixel ``(r, c)`` of the output covers level-0 ``[ox + c * scale, ox + (c + 1) * scale)``; it takes
    the input pixel under its centre (input pixel = 1 level-0 pixel at ``origin``). Outside the
    input: 255.

    Args:
        labels: (h, w) uint8 class indices in level-0 pixels.
        origin: Level-0 ``(x, y)`` of ``labels[0, 0]``.
        scale: Level-0 pixels per output pixel (``mpp_out / mpp_slide``).
        out_origin: Level-0 ``(x, y)`` of the output's top-left corner.
        out_shape: ``(H, W)`` of the output.

    Returns:
        (H, W) uint8.
    """
    rows = np.floor(out_origin[1] + (np.arange(out_shape[0]) + 0.5) * scale - origin[1]).astype(np.int64)
    cols = np.floor(out_origin[0] + (np.arange(out_shape[1]) + 0.5) * scale - origin[0]).astype(np.int64)
    valid_r = (rows >= 0) & (rows < labels.shape[0])
    valid_c = (cols >= 0) & (cols < labels.shape[1])
    out = np.full(out_shape, IGNORE_INDEX, dtype=np.uint8)
    if valid_r.any() and valid_c.any():
        out[np.ix_(valid_r, valid_c)] = labels[np.ix_(rows[valid_r], cols[valid_c])]
    return out


def dense_grid(
    record: SlideRecord, slide: Slide, options: GridOptions
) -> tuple[np.ndarray, tuple[float, float]]:
    """The ``dense`` label kind: a slide's label mask resampled to the training grid.

    The mask sits at ``record.label_offset`` (level-0); with ``options.white_value_map`` the
    slide pixels under it are read for the tissue test.

    Returns:
        ``(labels, origin)``: (H, W) uint8 labels (255 = unlabelled) covering the mask, and the
        level-0 ``(x, y)`` of ``labels[0, 0]`` (the mask's offset).
    """
    scale = options.mpp / slide.mpp
    width, height = slide.dimensions
    ox, oy = record.label_offset
    image = None
    if options.white_value_map:
        h, w = read_mask_file(record.labels).shape  # type: ignore[arg-type]
        if ox >= 0 and oy >= 0 and ox + w <= width and oy + h <= height:
            image = slide.read_region(ox, oy, w, h, 0)  # else load_dense_labels reports the size error
    level0 = load_dense_labels(
        record.labels,  # type: ignore[arg-type]
        options.classes,
        image_size=(width, height),
        value_map=options.value_map,
        offset=record.label_offset,
        white_value_map=options.white_value_map if image is not None else None,
        image=image,
    )
    out_shape = (max(1, math.floor(level0.shape[0] / scale)), max(1, math.floor(level0.shape[1] / scale)))
    return resample_labels(level0, (ox, oy), scale, (ox, oy), out_shape), (float(ox), float(oy))
