"""Parallel tile reading and the background TIFF writer (histoseg.inference.reader / writer)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from histoseg.errors import HistosegError, SlideError
from histoseg.inference.options import InferenceOptions
from histoseg.inference.predict import plan_tiles, predict_slide
from histoseg.inference.predictor import Predictor
from histoseg.inference.reader import PIECE_WIDTH, iter_batches, plan_reads
from histoseg.io.slide import Slide
from histoseg.io.tiff import write_pyramid_tiff

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random RGB blocks (so every tile, and every offset of a tile, looks different)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 5 + 1, width // 5 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(coarse, 5, 0), 5, 1)[:height, :width])


def random_predictor(tile: int = 64) -> Predictor:
    """A fixed random 3x3 conv net: logits depend on every pixel of the tile near the output pixel."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, len(CLASSES), 3, padding=1))
    return Predictor(model, list(CLASSES), mpp=1.0, tile_size=tile, margin=8, size_multiple=32)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.5 um/px, 600 x 520 px with a level at 1.0 um/px: the model's level is read in windows."""
    path = tmp_path_factory.mktemp("pyr") / "slide.tif"
    write_pyramid_tiff(path, textured(520, 600), 0.5, tile=64, min_level_size=300, compression="deflate")
    return path


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.5 um/px without a pyramid: tiles at 1.0 um/px are resampled one by one."""
    path = tmp_path_factory.mktemp("flat") / "slide.tif"
    write_pyramid_tiff(
        path, textured(300, 340, seed=1), 0.5, tile=64, min_level_size=4096, compression="deflate"
    )
    return path


def all_images(slide: Slide, plan, batch: int = 5, workers: int = 0) -> tuple[list, np.ndarray]:  # type: ignore[no-untyped-def]
    tiles, images = [], []
    for got, tensor in iter_batches(slide, plan, batch, workers=workers):
        assert (
            tensor.dtype == torch.uint8
            and tensor.shape[1:] == (plan.tile, plan.tile, 3)
            and len(got) <= batch
        )
        tiles.extend(got)
        images.append(tensor.numpy())
    return tiles, np.concatenate(images)


def test_band_reads_equal_per_tile_reads(pyramid: Path) -> None:
    with Slide(pyramid) as slide:
        width, height = slide.size_at_mpp(1.0)
        tiles = plan_tiles(height, width, 64, blend="gaussian", overlap=0.5)
        plan = plan_reads(slide, tiles, 64, 2.0, 1.0)
        assert plan.level == 1 and plan.downsample == 2 and plan.offset == (0, 0)
        # Bands start on the file's stored tiles (64 rows here), so each is decoded once.
        assert slide.stored_tile_height(1) == 64 and plan.band == 256
        assert all(piece.y0 % 256 == 0 for piece in plan.jobs)
        per_tile = plan_reads(slide, tiles, 64, 2.0, 1.0, bands=False)
        assert per_tile.level == -1
        order, images = all_images(slide, plan)
        assert order == tiles
        np.testing.assert_array_equal(images, all_images(slide, per_tile)[1])
        # Crop tiles start at -margin (outside the slide: white glass) and are still cut from bands.
        crop = plan_tiles(height, width, 64, blend="crop", margin=8)
        crop_plan = plan_reads(slide, crop, 64, 2.0, 1.0)
        assert crop_plan.level == 1 and crop_plan.jobs[0].y0 == -256
        first = all_images(slide, crop_plan)[1][0]
        np.testing.assert_array_equal(first, slide.read_at_mpp(-16, -16, 64, 64, 1.0))
        assert (first[:8] == 255).all()


def test_band_pieces_skip_glass_and_stay_narrow(tmp_path: Path) -> None:
    """Tiles far apart in a row are read as separate pieces; a wide row is cut into pieces."""
    path = tmp_path / "wide.tif"
    write_pyramid_tiff(
        path, textured(96, PIECE_WIDTH + 700), 1.0, tile=32, min_level_size=10**6, compression="deflate"
    )
    with Slide(path) as slide:
        tiles = plan_tiles(96, PIECE_WIDTH + 700, 64)
        kept = [t for t in tiles if t.x < 200 or t.x > 600]  # glass between x 200 and 600
        plan = plan_reads(slide, kept, 64, 1.0, 1.0)
        assert plan.level == 0 and plan.band == 256
        pieces = [(p.x0, p.x1) for p in plan.jobs]
        assert pieces[0] == (0, 256) and all(x1 - x0 <= PIECE_WIDTH for x0, x1 in pieces)
        assert not any(x0 < 500 < x1 for x0, x1 in pieces)  # the glass gap is not read
        order, images = all_images(slide, plan, batch=7)
        assert order == kept
        np.testing.assert_array_equal(
            images, all_images(slide, plan_reads(slide, kept, 64, 1.0, 1.0, bands=False))[1]
        )


def test_resampled_slide_reads_tile_by_tile(flat: Path) -> None:
    with Slide(flat) as slide:
        width, height = slide.size_at_mpp(1.0)
        plan = plan_reads(slide, plan_tiles(height, width, 64), 64, 2.0, 1.0)
        assert plan.level == -1


def test_batches_keep_tile_order_across_jobs_and_rows(pyramid: Path) -> None:
    with Slide(pyramid) as slide:
        width, height = slide.size_at_mpp(1.0)
        tiles = plan_tiles(height, width, 64)
        kept = [t for i, t in enumerate(tiles) if i % 3]  # gaps, as after skipping glass
        plan = plan_reads(slide, kept, 64, 2.0, 1.0)
        got = [all_images(slide, plan, 5, workers) for workers in (0, 2)]
        assert got[0][0] == got[1][0] == kept
        np.testing.assert_array_equal(got[0][1], got[1][1])
        expected = slide.read_at_mpp(kept[7].x * 2, kept[7].y * 2, 64, 64, 1.0)
        np.testing.assert_array_equal(got[0][1][7], expected)


@pytest.mark.parametrize("fixture", ["pyramid", "flat"])
def test_label_map_byte_identical_with_0_and_2_workers(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path = request.getfixturevalue(fixture)
    outputs = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}.labels.tif"
        options = InferenceOptions(batch_size=3, skip_glass=False, workers=workers, precision="32")
        result = predict_slide(path, random_predictor(), options, out_path=out, progress=False)
        outputs.append((tifffile.imread(out), result.counts, result.expected_counts))
        assert set(result.timings) >= {"read_wait", "forward", "merge", "write_wait"}
    (a, counts_a, exp_a), (b, counts_b, exp_b) = outputs
    assert a.dtype == np.uint8
    assert a.shape == ((260, 300) if fixture == "pyramid" else (150, 170))
    assert len(np.unique(a)) > 1  # a real label map, not a constant
    assert a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(counts_a, counts_b)
    np.testing.assert_array_equal(exp_a, exp_b)
    np.testing.assert_array_equal(np.bincount(a.ravel(), minlength=5)[:5], counts_a)


def corrupt_tile(path: Path, index: int) -> None:
    """Overwrite the compressed bytes of tile ``index`` of level 0 with garbage (same length)."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(bytes([0x5A]) * count)


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_tile_is_one_line_reason_no_leftovers(tmp_path: Path, workers: int) -> None:
    slide_dir = tmp_path / "slides"
    slide_dir.mkdir()
    path = slide_dir / "broken.tif"
    # 2112 x 128 px at 1 um/px with a level at 2 um/px: the thumbnail (tissue mask) reads level 1,
    # the model reads level 0, whose tile 20 (row 0, x 1280..1344) is garbage.
    write_pyramid_tiff(path, textured(128, 2112), 1.0, tile=64, min_level_size=1100, compression="deflate")
    corrupt_tile(path, 20)
    with Slide(path) as slide:
        assert slide.level_count == 2
        slide.thumbnail(1024)
    out_dir = tmp_path / "out"
    with pytest.raises(SlideError) as info:
        options = InferenceOptions(batch_size=2, skip_glass=False, workers=workers, precision="32")
        predict_slide(
            path, random_predictor(), options, out_path=out_dir / "broken.labels.tif", progress=False
        )
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "cannot read" in message
    assert sorted(p.name for p in out_dir.iterdir()) == []  # no label map, no .raw, no TIFF temp, no scratch
    assert multiprocessing.active_children() == []  # reader processes are gone


def test_negative_workers_is_an_option_error() -> None:
    with pytest.raises(HistosegError, match="workers=-1"):
        InferenceOptions(workers=-1)
