"""Class 4 of issue 15: slide tables and images as they come from real labs (encodings, line ends, pixel
formats): read correctly or refused with one line, never a silently white slide."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from histoseg.errors import ConfigError, SlideError
from histoseg.io.slide import Slide
from histoseg.labels.table import read_slide_table

TEXT = "slide,labels,split\nbiopsie_é_ü.tif,maske_é.png,train\nµ-probe.tif,,val\n"


@pytest.mark.parametrize(
    ("encoding", "bom", "newline"),
    [
        ("utf-8", b"", "\n"),
        ("utf-8", b"\xef\xbb\xbf", "\n"),
        ("utf-8", b"\xef\xbb\xbf", "\r\n"),
        ("utf-8", b"", "\r"),
        ("cp1252", b"", "\r\n"),
        ("latin-1", b"", "\n"),
        ("utf-16", b"", "\r\n"),
    ],
)
def test_encodings_slide_tables(tmp_path, encoding, bom, newline):
    table = tmp_path / "slides.csv"
    table.write_bytes(bom + TEXT.replace("\n", newline).encode(encoding))
    records = read_slide_table(table)
    assert [r.slide.name for r in records] == ["biopsie_é_ü.tif", "µ-probe.tif"]
    assert records[0].labels is not None and records[0].labels.name == "maske_é.png"
    assert [r.split for r in records] == ["train", "val"]


def test_encodings_windows_1252_is_named_in_a_warning(tmp_path, caplog):
    table = tmp_path / "slides.csv"
    table.write_bytes(TEXT.encode("cp1252"))
    read_slide_table(table)
    assert "not UTF-8 (byte 0xe9 on line 2); read as Windows-1252" in caplog.text


@pytest.mark.parametrize("data", [b"PK\x03\x04 workbook", b"slide\x00,labels\n"])
def test_encodings_binary_table_refused(tmp_path, data):
    table = tmp_path / "slides.xlsx"
    table.write_bytes(data)
    with pytest.raises(ConfigError, match="binary file .* not a CSV text table; save it as 'CSV UTF-8'"):
        read_slide_table(table)


def read_all(path):
    with Slide(path, mpp=0.5) as slide:
        w, h = slide.dimensions
        return slide.read_region(0, 0, w, h)


RGB = np.array([200, 120, 160], np.uint8)


def test_encodings_png_16_bit_grey_is_scaled_not_clipped(tmp_path):
    grey = np.array([[0, 257 * 100, 65535, 257 * 200]], np.uint16).repeat(4, axis=0)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert read_all(tmp_path / "g16.png")[0, :, 0].tolist() == [0, 100, 255, 200]


@pytest.mark.parametrize("mode", ["L", "P", "1", "LA"])
def test_encodings_png_modes(tmp_path, mode):
    image = Image.fromarray(np.broadcast_to(RGB, (8, 8, 3)).copy()).convert(mode)
    image.save(tmp_path / "m.png")
    expected = np.asarray(image.convert("RGB"))
    assert np.array_equal(read_all(tmp_path / "m.png"), expected)


def test_encodings_rgba_transparent_is_white_glass(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:, :2] = (200, 120, 160, 255)  # opaque tissue; the rest transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pixels = read_all(tmp_path / "a.png")
    assert pixels[0, 0].tolist() == [200, 120, 160] and pixels[0, 3].tolist() == [255, 255, 255]


def test_encodings_cmyk_jpeg(tmp_path):
    Image.fromarray(np.broadcast_to(RGB, (16, 16, 3)).copy()).convert("CMYK").save(
        tmp_path / "c.jpg", quality=100
    )
    assert np.abs(read_all(tmp_path / "c.jpg")[8, 8].astype(int) - RGB).max() <= 8


def test_encodings_tiff_16_bit_rgb_scaled(tmp_path):
    data = (np.broadcast_to(RGB, (8, 8, 3)).astype(np.uint16) * 257).copy()
    tifffile.imwrite(tmp_path / "rgb16.tif", data, photometric="rgb")
    assert read_all(tmp_path / "rgb16.tif")[0, 0].tolist() == RGB.tolist()


def test_encodings_tiff_cmyk_palette_miniswhite(tmp_path):
    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[..., 1] = 255  # pure magenta ink
    tifffile.imwrite(tmp_path / "cmyk.tif", cmyk, photometric="separated")
    assert read_all(tmp_path / "cmyk.tif")[0, 0].tolist() == [255, 0, 255]
    index = np.full((8, 8), 1, np.uint8)
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = (200 * 257, 120 * 257, 160 * 257)
    tifffile.imwrite(tmp_path / "pal.tif", index, photometric="palette", colormap=colormap)
    assert read_all(tmp_path / "pal.tif")[0, 0].tolist() == RGB.tolist()
    tifffile.imwrite(tmp_path / "white.tif", np.full((8, 8), 30, np.uint8), photometric="miniswhite")
    assert read_all(tmp_path / "white.tif")[0, 0].tolist() == [225, 225, 225]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (np.full((8, 8), 70000, np.uint32), "uint32 pixel samples are not supported"),
        (np.full((8, 8), -5, np.int16), "int16 pixel samples are not supported"),
        (np.full((8, 8), 4000.0, np.float32), "float pixel values span [4000, 4000]"),
    ],
)
def test_encodings_unconvertible_tiffs_refused(tmp_path, data, needle):
    tifffile.imwrite(tmp_path / "x.tif", data)
    with pytest.raises(SlideError) as info:
        read_all(tmp_path / "x.tif")
    assert needle in str(info.value) and "; save it as an 8- or 16-bit" in str(info.value)


def test_the_one_slide_table_writer_round_trips_through_the_reader(tmp_path):
    """io.text.write_slide_table (used by sources, synthetic and sample --crossfit): the reader reads back
    every row, also a path with a comma and a quote; extra columns come after the reader's own."""
    from histoseg.io.text import write_slide_table

    odd = tmp_path / 'a, "b".tif'
    rows = [
        {"seed": 7, "slide": odd, "labels": None, "split": "val", "mpp": 0.5},
        {"seed": 8, "slide": "c.tif", "labels": "c.csv", "kind": "points", "split": "train", "mpp": None},
    ]
    path = write_slide_table(tmp_path / "t.csv", rows)
    assert path.read_text(encoding="utf-8").splitlines()[0] == "slide,labels,kind,split,mpp,seed"
    first, second = read_slide_table(path)
    assert (first.slide, first.labels, first.kind, first.split, first.mpp) == (odd, None, "none", "val", 0.5)
    assert (second.slide.name, second.labels.name, second.kind, second.mpp) == ("c.tif", "c.csv", "points", None)
