"""Tiler + merger exactness with an oracle model, glass skipping, expected counts, label-map TIFF.

The oracle: the synthetic slide paints every class in its own colour, so a model that maps each
pixel to the nearest palette colour knows the true label of every pixel it is shown, and nothing
else (it sees only the tile's pixels, as a real model does). Any misplaced, dropped or wrongly
blended tile therefore shows up as a wrong pixel. With ``corrupt=m`` the oracle answers a wrong
class in the outer ``m`` pixels of every tile (a model without context at its border), which the
crop merger must discard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from torch import nn

from histoseg.errors import HistosegError
from histoseg.inference.options import InferenceOptions
from histoseg.inference.predict import gaussian_importance_map, plan_tiles, predict_slide
from histoseg.inference.predictor import Predictor

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]
PALETTE = np.array(
    [(240, 240, 240), (200, 120, 160), (120, 60, 160), (160, 40, 80), (220, 170, 200)], np.uint8
)


class ColourOracle(nn.Module):
    """Logits = 100 x one-hot of the class painted in that colour; wrong class in the outer ``corrupt`` px.

    The palette's red values are all different, so the red channel alone names the class (any
    other red value reads as the nearest palette red; white padding outside the slide as background).
    """

    def __init__(self, palette: np.ndarray, corrupt: int = 0) -> None:
        super().__init__()
        reds = palette[:, 0].astype(np.int64)
        nearest = np.abs(np.arange(256)[:, None] - reds[None, :]).argmin(1)  # blended colours: nearest red
        table = torch.tensor(nearest, dtype=torch.long)
        self.register_buffer("table", table)
        self.num_classes = len(palette)
        self.corrupt = corrupt
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += x.shape[0]
        labels = self.table[(x[:, 0] * 255.0).round().long()]
        onehot = F.one_hot(labels, self.num_classes).permute(0, 3, 1, 2).float() * 100.0
        if self.corrupt:
            m = self.corrupt
            border = torch.ones(x.shape[-2:], dtype=torch.bool)
            border[m:-m, m:-m] = False
            onehot = torch.where(border, onehot.roll(1, dims=1), onehot)
        return onehot


def make_truth(height: int, width: int, seed: int = 0, block: int = 7) -> np.ndarray:
    """Glass around an ellipse of tissue made of random class blocks (uint8 labels 0..4)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 5, size=(height // block + 1, width // block + 1))
    labels = np.repeat(np.repeat(coarse, block, 0), block, 1)[:height, :width].astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    inside = ((yy - height * 0.45) / (height * 0.4)) ** 2 + ((xx - width * 0.4) / (width * 0.35)) ** 2 <= 1
    labels[~inside] = 0
    return labels


def write_slide(path: Path, truth: np.ndarray, mpp: float = 1.0) -> Path:
    rgb = PALETTE[truth]
    tifffile.imwrite(
        path,
        rgb,
        photometric="rgb",
        tile=(64, 64),
        compression="zlib",
        resolution=(1e4 / mpp, 1e4 / mpp),
        resolutionunit="CENTIMETER",
    )
    return path


def oracle_predictor(corrupt: int = 0, background: int | None = 0) -> Predictor:
    return Predictor(
        model=ColourOracle(PALETTE, corrupt),
        classes=list(CLASSES),
        mpp=1.0,
        tile_size=64,
        margin=8,
        size_multiple=32,
        background_class=background,
    )


def test_plan_tiles_crop_partitions_and_gaussian_covers() -> None:
    for height, width in [(203, 331), (64, 64), (50, 70), (129, 65)]:
        cover = np.zeros((height, width), int)
        for tile in plan_tiles(height, width, 64, blend="crop", margin=8):
            x0, y0, x1, y1 = tile.own
            assert tile.x == x0 - 8 and tile.y == y0 - 8
            cover[y0:y1, x0:x1] += 1
        assert (cover == 1).all()
        cover[:] = 0
        tiles = plan_tiles(height, width, 64, blend="gaussian", overlap=0.5)
        for tile in tiles:
            x0, y0, x1, y1 = tile.own
            cover[y0:y1, x0:x1] += 1
        assert (cover >= 1).all()
        assert max(t.x for t in tiles) == max(0, width - 64)
        rows = [t.row for t in tiles]
        assert rows == sorted(rows)
    # nnU-Net step: 331 px, tile 64, step <= 32 -> ceil(267 / 32) + 1 = 10 evenly spaced starts.
    xs = sorted({t.x for t in plan_tiles(64, 331, 64, blend="gaussian", overlap=0.5)})
    assert len(xs) == 10 and xs[0] == 0 and xs[-1] == 267 and max(np.diff(xs)) <= 32


def test_gaussian_importance_map() -> None:
    w = gaussian_importance_map(64)
    assert w.shape == (64, 64) and w.dtype == np.float32
    assert w.max() == pytest.approx(1.0, abs=1e-6) and w.min() > 0
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    # sigma = 64 / 8 = 8 px; pixel centres are 0.5 px off the tile centre at the maximum (32, 32):
    # w[40, 32] = exp(-(8.5^2 + 0.5^2) / 128) / exp(-(0.5^2 + 0.5^2) / 128) = exp(-72 / 128).
    assert w[40, 32] == pytest.approx(np.exp(-72 / 128), rel=1e-5)


@pytest.mark.parametrize("size", [(203, 331), (64, 64), (50, 70)])
@pytest.mark.parametrize(
    "blend,overlap,margin,corrupt",
    [("gaussian", 0.5, 0, 0), ("gaussian", 0.0, 0, 0), ("crop", 0.0, 8, 8), ("crop", 0.0, 0, 0)],
)
@pytest.mark.parametrize("skip_glass", [False, True])
def test_oracle_reproduces_truth_exactly(
    tmp_path: Path,
    size: tuple[int, int],
    blend: str,
    overlap: float,
    margin: int,
    corrupt: int,
    skip_glass: bool,
) -> None:
    truth = make_truth(*size)
    slide = write_slide(tmp_path / "s.tif", truth)
    predictor = oracle_predictor(corrupt)
    options = InferenceOptions(
        blend=blend, overlap=overlap, margin=margin, batch_size=3, skip_glass=skip_glass
    )
    result = predict_slide(slide, predictor, options, progress=False)
    assert result.shape == truth.shape
    assert result.labels is not None
    np.testing.assert_array_equal(np.asarray(result.labels), truth)
    np.testing.assert_array_equal(result.counts, np.bincount(truth.ravel(), minlength=5))
    # Logits 100 x one-hot: softmax is one-hot up to 5e-43, so expected counts = argmax counts.
    np.testing.assert_allclose(result.expected_counts, result.counts, rtol=1e-9, atol=1e-3)
    assert result.unlabelled_pixels == 0
    # precision auto: the first batch also runs once in fp32 for the agreement check.
    checked = result.precision_check["tiles"] if result.precision_check else 0
    assert predictor.model.calls == result.tiles_run + checked  # type: ignore[union-attr]
    if skip_glass and size == (203, 331):
        assert result.tiles_run < result.tiles_total


def test_corrupt_border_without_margin_is_caught(tmp_path: Path) -> None:
    """Negative control: the same oracle with its border corrupted, merged without a margin, is wrong."""
    truth = make_truth(203, 331)
    slide = write_slide(tmp_path / "s.tif", truth)
    result = predict_slide(
        slide, oracle_predictor(corrupt=8), InferenceOptions(blend="crop", margin=0), progress=False
    )
    assert (np.asarray(result.labels) != truth).mean() > 0.1


def test_glass_without_background_class_is_unlabelled(tmp_path: Path) -> None:
    truth = make_truth(203, 331)
    truth[:, 200:] = 0  # a wide glass band: whole tiles are skipped
    slide = write_slide(tmp_path / "s.tif", truth)
    options = InferenceOptions(blend="crop", margin=8)
    result = predict_slide(slide, oracle_predictor(background=None), options, progress=False)
    labels = np.asarray(result.labels)
    assert result.tiles_run < result.tiles_total
    # Tissue pixels exact; glass either predicted background by the model (tiles run) or 255 (skipped).
    tissue = truth > 0
    np.testing.assert_array_equal(labels[tissue], truth[tissue])
    assert set(np.unique(labels[~tissue])) <= {0, 255}
    assert (labels[:, 260:] == 255).all()
    assert result.unlabelled_pixels == int((labels == 255).sum())
    assert result.counts.sum() + result.unlabelled_pixels == truth.size


class Constant(nn.Module):
    """Equal logits everywhere: softmax 1/C per class, argmax class 0."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.num_classes, *x.shape[-2:])


@pytest.mark.parametrize("blend", ["gaussian", "crop"])
def test_expected_counts_known_answer(tmp_path: Path, blend: str) -> None:
    truth = make_truth(150, 170)
    slide = write_slide(tmp_path / "s.tif", truth)
    predictor = Predictor(Constant(5), list(CLASSES), mpp=1.0, tile_size=64, margin=8)
    result = predict_slide(slide, predictor, InferenceOptions(blend=blend, skip_glass=False), progress=False)
    np.testing.assert_allclose(result.expected_counts, np.full(5, 150 * 170 / 5), rtol=1e-5)
    assert result.counts.tolist() == [150 * 170, 0, 0, 0, 0]
    rows = result.areas()
    assert rows[0]["expected_area_um2"] == pytest.approx(150 * 170 / 5, rel=1e-5)


def test_label_tiff_written_with_mpp_levels_and_colours(tmp_path: Path) -> None:
    truth = make_truth(530, 610, block=9)
    slide = write_slide(tmp_path / "s.tif", truth, mpp=1.0)
    out = tmp_path / "out" / "s.labels.tif"
    predictor = oracle_predictor()
    options = InferenceOptions(tile_size=128, blend="crop", margin=8)
    result = predict_slide(slide, predictor, options, out_path=out, progress=False)
    assert result.labels_path == out and result.labels is None
    assert sorted(p.name for p in out.parent.iterdir()) == ["s.labels.tif"]  # no temp files left
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        np.testing.assert_array_equal(page.asarray(), truth)
        assert page.is_tiled and len(tif.pages) >= 2
        assert page.photometric == tifffile.PHOTOMETRIC.PALETTE
        x_res = page.tags["XResolution"].value
        assert 1e4 / (x_res[0] / x_res[1]) == pytest.approx(1.0, rel=1e-6)
        assert '"classes"' in page.description
    import openslide

    with openslide.OpenSlide(str(out)) as osr:
        assert osr.level_count == len(tifffile.TiffFile(out).pages)
        assert osr.dimensions == (610, 530)
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(1.0, rel=1e-6)


def test_resampled_grid_size(tmp_path: Path) -> None:
    """A 0.5 um/px slide predicted at 1.0 um/px gives a label map of half the size (rounded)."""
    truth = make_truth(203, 331)
    big = np.repeat(np.repeat(truth, 2, 0), 2, 1)[:405, :661]
    slide = write_slide(tmp_path / "s.tif", big, mpp=0.5)
    result = predict_slide(slide, oracle_predictor(), progress=False)
    assert result.shape == (round(405 / 2), round(661 / 2))
    assert result.slide_mpp == pytest.approx(0.5) and result.mpp == 1.0
    agree = (np.asarray(result.labels)[:202, :330] == truth[:202, :330]).mean()
    assert agree > 0.9


def test_wrong_model_output_is_a_user_error(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "s.tif", make_truth(100, 100))
    predictor = Predictor(Constant(3), list(CLASSES), mpp=1.0, tile_size=64)
    with pytest.raises(HistosegError, match="expected"):
        predict_slide(slide, predictor, InferenceOptions(skip_glass=False), progress=False)
    with pytest.raises(HistosegError, match="tile_size=50: must be a positive multiple of 32"):
        predict_slide(slide, oracle_predictor(), InferenceOptions(tile_size=50), progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["s.tif"]


def test_autocast_and_channels_last(tmp_path: Path) -> None:
    truth = make_truth(150, 170)
    slide = write_slide(tmp_path / "s.tif", truth)
    options = InferenceOptions(precision="bf16", channels_last=True)
    result = predict_slide(slide, oracle_predictor(), options, progress=False)
    np.testing.assert_array_equal(np.asarray(result.labels), truth)


def test_bounded_thumbnail_matches_whole_level(tmp_path: Path) -> None:
    from histoseg.io.slide import Slide

    slide = write_slide(tmp_path / "s.tif", make_truth(700, 900, block=9))
    with Slide(slide) as handle:
        whole, ds = handle.thumbnail(max_side=300)
        pieces, ds2 = handle.thumbnail(max_side=300, max_read_pixels=120 * 120)
    assert whole.shape == pieces.shape == (233, 300, 3) and ds == ds2 == 3.0
    assert np.abs(whole.astype(int) - pieces).mean() < 2.0
