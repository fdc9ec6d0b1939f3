"""Tests of histoseg.io.tiff: pyramidal tiled TIFFs that OpenSlide and tifffile read back."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from histoseg.errors import HistosegError
from histoseg.io.tiff import describe_label_map, level_shapes, read_tiff_mpp, write_pyramid_tiff

COLORS = np.array([[255, 255, 255], [240, 200, 80], [60, 160, 220], [220, 40, 120], [120, 200, 90]], np.uint8)


def _halve(a: np.ndarray) -> np.ndarray:
    """Reference 2 x 2 rounded mean with edge replication (independent of the module's code)."""
    if a.shape[0] % 2:
        a = np.concatenate([a, a[-1:]], axis=0)
    if a.shape[1] % 2:
        a = np.concatenate([a, a[:, -1:]], axis=1)
    s = a.astype(np.int64)
    return ((s[0::2, 0::2] + s[1::2, 0::2] + s[0::2, 1::2] + s[1::2, 1::2] + 2) // 4).astype(np.uint8)


def _rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_level_shapes_known_answer() -> None:
    assert level_shapes(2304, 3072, 512) == [(2304, 3072), (1152, 1536), (576, 768), (288, 384)]
    assert level_shapes(700, 1101, 300) == [(700, 1101), (350, 551), (175, 276)]
    assert level_shapes(700, 1101, 276) == [(700, 1101), (350, 551), (175, 276)]
    assert level_shapes(700, 1101, 275) == [(700, 1101), (350, 551), (175, 276), (88, 138)]
    assert level_shapes(100, 80, 512) == [(100, 80)]


def test_rgb_deflate_pyramid_exact_and_openslide(tmp_path: Path) -> None:
    image = _rgb(700, 1100)  # even sizes: downsamples exactly 2 and 4, so read_region does not resample
    path = tmp_path / "rgb.tif"
    mpp = 0.2527
    write_pyramid_tiff(path, image, mpp, compression="deflate", min_level_size=300, tile=128)

    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 3
        assert len(tif.series[0].levels) >= 1
        pages = [p.asarray() for p in tif.pages]
        assert all(p.is_tiled for p in tif.pages)
        assert [int(p.subfiletype) for p in tif.pages] == [0, 1, 1]
        assert all(not p.subifds for p in tif.pages)
    np.testing.assert_array_equal(pages[0], image)
    level1 = _halve(image)
    np.testing.assert_array_equal(pages[1], level1)
    np.testing.assert_array_equal(pages[2], _halve(level1))

    slide = openslide.OpenSlide(str(path))
    try:
        assert slide.level_count == 3
        assert slide.level_dimensions == ((1100, 700), (550, 350), (275, 175))
        assert slide.level_downsamples == (1.0, 2.0, 4.0)
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(mpp, rel=1e-6)
        assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(mpp, rel=1e-6)
        region = np.asarray(slide.read_region((256, 128), 1, (64, 32)))[..., :3]
        np.testing.assert_array_equal(region, level1[64:96, 128:192])
    finally:
        slide.close()
    assert read_tiff_mpp(path) == pytest.approx(mpp, rel=1e-6)
    # each level carries its own resolution: level 2 has mpp * downsample
    assert read_tiff_mpp(path, page=2) == pytest.approx(mpp * 4, rel=1e-6)


def test_odd_edges_mean_known_answer(tmp_path: Path) -> None:
    image = np.array([[0, 4, 8], [4, 8, 12], [8, 12, 16]], np.uint8)
    path = tmp_path / "tiny.tif"
    write_pyramid_tiff(path, image, 1.0, tile=16, min_level_size=2)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 2
        np.testing.assert_array_equal(tif.pages[0].asarray(), image)
        np.testing.assert_array_equal(tif.pages[1].asarray(), [[4, 10], [10, 16]])


def test_rgb_jpeg_close_and_openslide(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:600, 0:900]
    image = np.stack([(xx // 4) % 256, (yy // 3) % 256, ((xx + yy) // 8) % 256], axis=-1).astype(np.uint8)
    path = tmp_path / "rgb_jpeg.tif"
    write_pyramid_tiff(path, image, 0.5, min_level_size=256, description="hello slide")
    with tifffile.TiffFile(path) as tif:
        assert [p.shape for p in tif.pages] == [(600, 900, 3), (300, 450, 3), (150, 225, 3)]
        assert tif.pages[0].compression == tifffile.COMPRESSION.JPEG
        assert tif.pages[0].description == "hello slide"
        decoded = tif.pages[0].asarray().astype(int)
        reduced = tif.pages[1].asarray().astype(int)
    assert np.abs(decoded - image).mean() < 3.0
    assert np.abs(reduced - _halve(image)).mean() < 3.0
    slide = openslide.OpenSlide(str(path))
    try:
        assert slide.level_count == 3
        assert slide.properties["openslide.comment"] == "hello slide"
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5, rel=1e-6)
        region = np.asarray(slide.read_region((0, 0), 0, (900, 600)))[..., :3].astype(int)
        assert np.abs(region - image).mean() < 3.0
    finally:
        slide.close()


def test_label_map_palette_exact_indices_and_colours(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, (530, 777), dtype=np.uint8)
    path = tmp_path / "labels.tif"
    description = describe_label_map(["background", "interstitium", "tubules", "glomeruli", "other"], COLORS)
    write_pyramid_tiff(path, labels, 0.5, colormap=COLORS, min_level_size=128, description=description)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 4
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.PALETTE
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        for k, page in enumerate(tif.pages):
            # nearest (stride) reduction: no new class values, exact indices at every level
            np.testing.assert_array_equal(page.asarray(), labels[:: 2**k, :: 2**k])
        assert '"classes"' in tif.pages[0].description
    slide = openslide.OpenSlide(str(path))
    try:
        assert slide.level_count == 4
        assert slide.level_dimensions[0] == (777, 530)
        region = np.asarray(slide.read_region((10, 20), 0, (50, 40)))[..., :3]
        np.testing.assert_array_equal(region, COLORS[labels[20:60, 10:60]])
    finally:
        slide.close()


def test_memmap_input_bounded_memory(tmp_path: Path) -> None:
    height, width = 2048, 3072
    source = np.lib.format.open_memmap(
        tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(height, width, 3)
    )
    for y in range(0, height, 256):  # fill without materialising a whole image in memory
        source[y : y + 256] = _rgb(min(256, height - y), width, seed=y)
    source.flush()
    readonly = np.load(tmp_path / "big.npy", mmap_mode="r")
    out = tmp_path / "big.tif"
    tracemalloc.start()
    try:
        write_pyramid_tiff(out, readonly, 0.25, compression="none")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    image_bytes = height * width * 3
    # a few tiles and one 512 x 512 reduction block, not a level: < 6 MB for a 19 MB image
    assert peak < 6e6, f"peak traced memory {peak} bytes for an image of {image_bytes} bytes"
    with tifffile.TiffFile(out) as tif:
        assert [p.shape[:2] for p in tif.pages] == level_shapes(height, width, 512)
        np.testing.assert_array_equal(
            tif.pages[0].asarray()[1000:1100, 2000:2300], readonly[1000:1100, 2000:2300]
        )
    assert not list(tmp_path.glob(".pyramid-*")), "the scratch folder must be removed"
    assert not list(tmp_path.glob(".big.tmp-*")), "no temporary file may remain"


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (np.zeros((10, 10), np.float32), {}, "uint8"),
        (np.zeros((10, 10, 4), np.uint8), {}, "(H, W) label map or an (H, W, 3) RGB image"),
        (np.zeros((10, 10), np.uint8), {"mpp": 0.0}, "mpp"),
        (np.zeros((10, 10), np.uint8), {"colormap": COLORS, "compression": "jpeg"}, "deflate"),
        (np.zeros((10, 10, 3), np.uint8), {"colormap": COLORS}, "2-D label maps"),
        (np.zeros((10, 10), np.uint8), {"tile": 100}, "multiple of 16"),
        (np.zeros((10, 10), np.uint8), {"compression": "lzma"}, "compression"),
    ],
)
def test_invalid_input_raises_one_line_error(
    tmp_path: Path, image: np.ndarray, kwargs: dict, message: str
) -> None:
    path = tmp_path / "bad.tif"
    mpp = kwargs.pop("mpp", 0.5)
    with pytest.raises(HistosegError, match=None) as info:
        write_pyramid_tiff(path, image, mpp, **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not path.exists()
    assert not list(tmp_path.iterdir())


def test_read_tiff_mpp_without_tags_and_missing_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((8, 8), np.uint8))
    assert read_tiff_mpp(plain) is None
    with pytest.raises(HistosegError, match="missing.tif"):
        read_tiff_mpp(tmp_path / "missing.tif")
