"""io/pixels.py: scanner pixel formats converted to uint8 RGB exactly, or refused with one line."""

import numpy as np
import pytest
from PIL import Image

from histoseg.errors import SlideError
from histoseg.io.pixels import check_dtype, pil_to_rgb, to_rgb_uint8


def test_known_conversions():
    grey16 = np.array([[0, 257, 65535]], np.uint16)
    assert to_rgb_uint8(grey16).tolist() == [[[0, 0, 0], [1, 1, 1], [255, 255, 255]]]
    assert to_rgb_uint8(np.array([[0.0, 0.5, 1.0]], np.float32))[0, :, 0].tolist() == [0, 128, 255]
    assert to_rgb_uint8(np.array([[0.0, 200.0]], np.float32))[0, :, 0].tolist() == [0, 200]
    rgba = np.array([[[0, 0, 0, 128]]], np.uint8)  # half-transparent black on white glass
    assert to_rgb_uint8(rgba).tolist() == [[[127, 127, 127]]]
    cmyk = np.array([[[255, 0, 0, 0], [0, 0, 0, 255]]], np.uint8)
    assert to_rgb_uint8(cmyk, photometric="separated").tolist() == [[[0, 255, 255], [0, 0, 0]]]
    assert to_rgb_uint8(np.array([[0, 255]], np.uint8), photometric="miniswhite")[0, :, 0].tolist() == [
        255,
        0,
    ]
    palette = np.array([[0, 65535], [0, 0], [65535, 0]], np.uint16)  # (3, N): 0 = blue, 1 = red
    assert to_rgb_uint8(np.array([[1, 0]], np.uint8), "palette", palette).tolist() == [
        [[255, 0, 0], [0, 0, 255]]
    ]


def test_unconvertible_samples_are_refused_naming_the_file():
    with pytest.raises(SlideError, match=r"s\.tif: float pixel values span \[-1, 2\]"):
        to_rgb_uint8(np.array([[-1.0, 2.0]]), path="s.tif")
    with pytest.raises(SlideError, match="int32 pixel samples are not supported; save it as"):
        check_dtype("s.tif", np.dtype(np.int32))
    check_dtype("s.tif", np.dtype(np.uint16))  # accepted: no error


def test_pillow_modes():
    assert pil_to_rgb(Image.new("L", (2, 1), 7), "x.png").tolist() == [[[7, 7, 7], [7, 7, 7]]]
    la = Image.new("LA", (1, 1), (0, 0))  # fully transparent: white glass
    assert pil_to_rgb(la, "x.png").tolist() == [[[255, 255, 255]]]
    i32 = Image.fromarray(np.array([[70000]], np.int32))
    with pytest.raises(SlideError, match="32-bit pixel values up to 70000"):
        pil_to_rgb(i32, "x.png")
