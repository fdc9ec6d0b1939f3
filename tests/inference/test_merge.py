"""The merge on the model's device is byte-identical at fp32 to the old NumPy host merge.

The reference is the host merger as it was (``tests/inference/numpy_merge_reference.py``), fed the very same
tiles and fp32 logits of a random convolutional network (continuous logits: every pixel's argmax is
decided by float arithmetic, so any change of weighting, accumulation order or division shows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from histoseg.inference.options import InferenceOptions
from histoseg.inference.predict import _tissue_tiles, plan_tiles, predict_slide
from histoseg.inference.predictor import Predictor
from histoseg.inference.reader import iter_batches, plan_reads
from histoseg.io.slide import Slide
from histoseg.io.tissue import tissue_mask
from tests.inference.numpy_merge_reference import _CropMerger, _GaussianMerger, _RowSink, _Stats
from tests.inference.test_predict import CLASSES, make_truth, write_slide


class RandomNet(nn.Module):
    """A seeded random two-layer conv net with large, continuous logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.Tanh(), nn.Conv2d(8, 5, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 8.0 - 4.0) * 4.0


def random_net() -> nn.Module:
    return RandomNet().eval()


def host_merge(
    slide_path: Path, predictor: Predictor, options: InferenceOptions
) -> tuple[np.ndarray, _Stats]:
    """The old pipeline: same tile plan, same batches of 3, fp32 logits to NumPy, NumPy merger."""
    options = options.resolve(predictor)
    tile, margin = options.tile_size, options.margin
    assert tile is not None and margin is not None
    with Slide(slide_path) as slide:
        width, height = slide.size_at_mpp(predictor.mpp)
        scale0 = predictor.mpp / slide.mpp
        tiles = plan_tiles(height, width, tile, blend=options.blend, overlap=options.overlap, margin=margin)  # type: ignore[arg-type]
        thumb, ds = slide.thumbnail(1024)
        if options.skip_glass:
            tiles = _tissue_tiles(tiles, tissue_mask(thumb), scale0 / ds, use_own=options.blend == "crop")
        sink = _RowSink(height, width)
        stats = _Stats(len(CLASSES), 0, 0)
        if options.blend == "gaussian":
            merger = _GaussianMerger(sink, len(CLASSES), tile, stats)
        else:
            merger = _CropMerger(sink, tile - 2 * margin, stats)
        for batch, images in iter_batches(slide, plan_reads(slide, tiles, tile, scale0, predictor.mpp), 3):
            with torch.inference_mode():
                x = images.permute(0, 3, 1, 2).float().div_(255.0).contiguous()
                logits = predictor.model(x).float().contiguous().numpy()
            for index, item in enumerate(batch):
                merger.add(logits[index], item)
        merger.finish()
    return sink.array, stats


@pytest.mark.parametrize("size", [(203, 331), (50, 70)])
@pytest.mark.parametrize(
    "blend,overlap,margin,skip_glass",
    [
        ("gaussian", 0.5, 0, True),
        ("gaussian", 0.25, 0, False),
        ("crop", 0.0, 8, True),
        ("crop", 0.0, 0, False),
    ],
)
def test_device_merge_byte_identical_to_host_merge_at_fp32(
    tmp_path: Path, size: tuple[int, int], blend: str, overlap: float, margin: int, skip_glass: bool
) -> None:
    slide = write_slide(tmp_path / "s.tif", make_truth(*size, seed=3))
    predictor = Predictor(random_net(), list(CLASSES), mpp=1.0, tile_size=64, margin=8, size_multiple=32)
    options = InferenceOptions(
        blend=blend,
        overlap=overlap,
        margin=margin,
        batch_size=3,
        skip_glass=skip_glass,
        precision="32",  # type: ignore[arg-type]
    )
    result = predict_slide(slide, predictor, options, progress=False)
    reference, stats = host_merge(slide, predictor, options)
    labels = np.asarray(result.labels)
    assert labels.dtype == np.uint8 and labels.shape == reference.shape
    assert len(np.unique(reference)) >= 3  # the random net really decides between classes
    assert labels.tobytes() == reference.tobytes()
    np.testing.assert_array_equal(result.counts, stats.counts[:5])
    np.testing.assert_allclose(result.expected_counts, stats.expected, rtol=1e-5)
    assert result.precision == "32" and not result.channels_last


def test_fast_argmax_matches_torch_argmax_with_ties_and_nan():
    """The merger's argmax equals torch.argmax(dim=0) exactly: first maximum wins, NaN counts as the maximum."""
    from histoseg.inference.merge import _argmax_and_max

    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (5, 7, 9), generator=gen).float()  # many ties
    expected = torch.argmax(scores, dim=0).to(torch.uint8)
    assert torch.equal(_argmax_and_max(scores)[0], expected)
    scores[3, 2, 4] = float("nan")
    scores[1, 0, 0] = float("inf")
    assert torch.equal(_argmax_and_max(scores)[0], torch.argmax(scores, dim=0).to(torch.uint8))
    assert int(_argmax_and_max(scores)[0][2, 4]) == 3


@pytest.mark.parametrize("classes", [2, 3, 9])
def test_fast_argmax_matches_torch_argmax_for_any_class_count_and_infinities(classes: int) -> None:
    from histoseg.inference.merge import _argmax_and_max

    gen = torch.Generator().manual_seed(classes)
    scores = torch.randint(0, 2, (classes, 6, 11), generator=gen).float()  # ties everywhere
    scores[:, 0, 0] = -float("inf")  # every class -inf: class 0, as torch.argmax
    scores[classes - 1, 1, 1] = float("inf")
    scores[0, 2, 2] = scores[classes - 1, 2, 2] = float("inf")  # tie of +inf: the first wins
    assert torch.equal(_argmax_and_max(scores)[0], torch.argmax(scores, dim=0).to(torch.uint8))


def test_expected_counts_are_the_softmax_summed_over_covered_pixels_only():
    """Stats' in-place softmax sum (exp pass + per-row products) against float64 softmax."""
    from histoseg.inference.merge import Stats

    gen = torch.Generator().manual_seed(5)
    scores = torch.randn((4, 3, 50), generator=gen) * 6.0
    covered = torch.rand((3, 50), generator=gen) > 0.3
    scores[:, ~covered] = 0.0  # the merger's uncovered pixels (sum 0, divided by 1)
    reference = (torch.softmax(scores.double(), dim=0) * covered).sum(dim=(1, 2))
    stats = Stats(4, fill=0, background=0, device=torch.device("cpu"))
    kept = scores.clone()
    labels = stats.add_scores(scores.clone(), covered, consume=True)
    stats.add_scores(kept, covered)  # not consumed: the scores are left as they were
    assert torch.equal(kept, scores)
    np.testing.assert_allclose(stats.expected, 2 * reference.numpy(), rtol=1e-6)
    assert torch.equal(labels[covered], torch.argmax(scores, dim=0).to(torch.uint8)[covered])


def _three_bad_tiles() -> torch.Tensor:
    """(5, 2, 4, 4) scores: tiles 1, 3 and 4 hold NaN or infinite values; tile 2 huge finite ones."""
    scores = torch.zeros(5, 2, 4, 4)
    scores[1, 0, 0, 0] = float("nan")
    scores[2] = 3e38  # finite, but its float32 sum overflows: rechecked value by value
    scores[3, 0, 0, 0], scores[3, 1, 0, 0] = float("inf"), -float("inf")
    scores[4, 1, 2, 2] = -float("inf")
    return scores


def test_nonfinite_tiles_counts_each_bad_tile_once_and_not_huge_finite_ones():
    from histoseg.inference.predict import _nonfinite_tiles

    assert _nonfinite_tiles(_three_bad_tiles()) == 3


@pytest.mark.parametrize("deferred", [False, True])
def test_nonfinite_count_is_the_same_kept_on_the_device(deferred: bool) -> None:
    """The on-device counter (what a GPU uses: no host read per batch) counts exactly as the host one."""
    from histoseg.inference.predict import _NonfiniteTiles

    scores = _three_bad_tiles()
    counter = _NonfiniteTiles(torch.device("cpu"), deferred=deferred)
    assert counter.deferred is deferred
    for _ in range(2):
        counter.add(scores)
        counter.add(torch.zeros(3, 2, 4, 4))
    assert counter.count == 6
    assert _NonfiniteTiles(torch.device("meta")).deferred  # any device but the CPU counts on the device
