import numpy as np
import pytest

from histoseg.errors import SlideError
from histoseg.io.slide import Slide, find_slides
from tests.conftest import write_tiff_pyramid


@pytest.fixture
def pyramid(tmp_path, rng):
    image = rng.integers(0, 255, (300, 260, 3), dtype=np.uint8)
    return write_tiff_pyramid(tmp_path / "s.tif", image, mpp=0.25, levels=3), image


def test_tiff_pyramid_geometry_and_mpp(pyramid):
    path, image = pyramid
    with Slide(path) as slide:
        assert slide.dimensions == (260, 300)
        assert slide.level_count == 3
        assert slide.level_dimensions[1] == (130, 150)
        assert slide.mpp == pytest.approx(0.25)
        assert slide.mpp_source == "tiff-resolution"
        assert slide.level_mpp(1) == pytest.approx(0.5)
        assert slide.best_level_for_mpp(0.5) == 1
        assert slide.best_level_for_mpp(0.7) == 1
        assert slide.best_level_for_mpp(0.2) == 0


def test_read_region_exact_and_white_outside(pyramid):
    path, image = pyramid
    with Slide(path) as slide:
        assert np.array_equal(slide.read_region(10, 20, 50, 40), image[20:60, 10:60])
        region = slide.read_region(-5, 290, 20, 20)
        assert np.array_equal(region[:10, 5:], image[290:300, 0:15])
        assert (region[:, :5] == 255).all() and (region[10:] == 255).all()
        level1 = slide.read_region(40, 60, 8, 8, level=1)
        assert level1.shape == (8, 8, 3)


def test_read_at_mpp_sizes_and_values(tmp_path):
    image = np.zeros((256, 256, 3), np.uint8)
    image[:, 128:] = 200
    path = write_tiff_pyramid(tmp_path / "h.tif", image, mpp=0.5, levels=1)
    with Slide(path) as slide:
        same = slide.read_at_mpp(0, 0, 64, 64, mpp=0.5)
        assert np.array_equal(same, image[:64, :64])
        half = slide.read_at_mpp(0, 0, 128, 128, mpp=1.0)  # resampled 2x down from level 0
        assert half.shape == (128, 128, 3)
        assert (half[:, :63] == 0).all() and (half[:, 65:] == 200).all()
        assert slide.size_at_mpp(2.0) == (64, 64)


def test_png_needs_mpp_override(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(SlideError, match=r"a\.png: .*no resolution.*--mpp"):
        Slide(tmp_path / "a.png")
    with Slide(tmp_path / "a.png", mpp=0.5) as slide:
        assert slide.mpp_source == "override" and slide.dimensions == (12, 10)


def test_tiff_without_resolution_needs_mpp(tmp_path, rng):
    path = write_tiff_pyramid(
        tmp_path / "n.tif", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), mpp=None, levels=1
    )
    with pytest.raises(SlideError, match="no resolution"):
        Slide(path)
    assert Slide(path, mpp=0.3).mpp == 0.3


@pytest.mark.parametrize(("mpp", "said"), [(0.001, "0.001"), (1e5, "100000"), (25400 / 72, "352.778")])
def test_messages_that_mislead_implausible_metadata_mpp_is_named(tmp_path, rng, mpp, said):
    """Issue 28, class 8: a resolution tag saying 0.001 or 1e5 um/px (or a 72 dpi default) is named with its
    value as implausible, not reported as "no resolution in its metadata"."""
    path = write_tiff_pyramid(
        tmp_path / "m.tif", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), mpp=mpp, levels=1
    )
    with pytest.raises(SlideError) as error:
        Slide(path)
    message = str(error.value)
    assert f"m.tif: its metadata says {said} microns per pixel (tiff-resolution)" in message, message
    assert "not a plausible slide resolution (0.05-100" in message and "--mpp" in message
    assert "no resolution" not in message
    assert Slide(path, mpp=0.5).mpp == 0.5


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "not found"),
        (b"", "empty file"),
        (b"this is not an image" * 10, "cannot read slide|not a slide format"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, content, match):
    path = tmp_path / "bad.svs"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SlideError, match=match) as info:
        Slide(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0.33, 0.9, 0.99])
def test_truncated_tiff(tmp_path, pyramid, keep):
    path, _ = pyramid
    data = path.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(SlideError, match="cut.tif") as info:
        with Slide(cut) as slide:
            slide.read_region(0, 0, 260, 300)
    assert "\n" not in str(info.value)


def test_truncated_svs(tmp_path, cmu):
    data = (cmu / "CMU-1-Small-Region.svs").read_bytes()
    cut = tmp_path / "cut.svs"
    cut.write_bytes(data[: int(len(data) * 0.95)])
    with pytest.raises(SlideError, match="truncated"):
        Slide(cut)


def test_cmu_svs_and_pyramid_read_mpp(cmu):
    for name, levels in (("CMU-1-Small-Region.svs", 1), ("CMU-1-Small-Region_pyramid.tiff", 3)):
        with Slide(cmu / name) as slide:
            assert slide.mpp == pytest.approx(0.499)
            assert slide.dimensions == (2220, 2967)
            assert slide.level_count == levels
            tile = slide.read_at_mpp(1000, 1000, 64, 64, mpp=2.0)
            assert tile.shape == (64, 64, 3) and tile.dtype == np.uint8
    # both readers agree on the pixels of the same region (pyramid is JPEG re-encoded: close, not equal)
    a = Slide(cmu / "CMU-1-Small-Region.svs").read_region(800, 900, 128, 128).astype(int)
    b = Slide(cmu / "CMU-1-Small-Region_pyramid.tiff").read_region(800, 900, 128, 128).astype(int)
    assert np.abs(a - b).mean() < 6


def test_svs_region_past_the_edge_is_white_and_the_rest_unchanged(cmu):
    """OpenSlide's transparent pixels outside the scan composite to white; opaque ones are copied."""
    with Slide(cmu / "CMU-1-Small-Region.svs") as slide:
        inside = slide.read_region(2220 - 64, 0, 64, 32)
        straddling = slide.read_region(2220 - 64, 0, 96, 32)
        stored = slide.stored_tile_height(0)
    np.testing.assert_array_equal(straddling[:, :64], inside)
    assert (straddling[:, 64:] == 255).all()
    assert stored == 240  # Aperio's 240-px tiles: band reads start on multiples of them


def test_find_slides(tmp_path):
    (tmp_path / "a.svs").write_bytes(b"x")
    (tmp_path / "b.tif").write_bytes(b"x")
    (tmp_path / ".hidden").write_bytes(b"x")
    assert [p.name for p in find_slides(tmp_path)] == ["a.svs", "b.tif"]
    assert [p.name for p in find_slides(str(tmp_path / "*.tif"))] == ["b.tif"]
    # A folder of synthetic slides or of quantify outputs: histoseg's own files are never slides.
    for name in ("b.labels.tif", "manifest.json", "slides.csv", "b.overlay.png", "b.geojson", "report.csv"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_slides(tmp_path)] == ["a.svs", "b.tif"]
    (tmp_path / "notes.txt").write_bytes(b"x")  # anything else is listed, to be reported by name
    assert [p.name for p in find_slides(tmp_path)] == ["a.svs", "b.tif", "notes.txt"]
    with pytest.raises(SlideError, match="no slide files"):
        find_slides(str(tmp_path / "*.ndpi"))


def test_check_mpp_override_known_answers():
    """The one check of --mpp: a plausible resolution, at most 8x coarser than the model's."""
    from histoseg.errors import ConfigError
    from histoseg.io.slide import check_mpp_override

    assert check_mpp_override("0.5", 1.0) == 0.5 and check_mpp_override(8.0, 1.0) == 8.0
    assert check_mpp_override(50) == 50.0  # model not known yet: the range alone
    with pytest.raises(ConfigError, match=r"--mpp 50: .*upsampled 25x to the model's 2 microns"):
        check_mpp_override(50, 2.0)
    with pytest.raises(ConfigError, match="--mpp 0: must be a positive resolution"):
        check_mpp_override(0, 1.0)
