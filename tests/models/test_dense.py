"""models/dense.py: dense prediction with a convolutionalized classifier (exact upsampling, chunking, MAC counts)."""

from __future__ import annotations

import torch
from torch import nn

from histoseg.models.classifiers import PlainPatchClassifier
from histoseg.models.convolutionalize import convolutionalize
from histoseg.models.dense import DensePredictor, count_macs, dense_predict
from tests.models.test_convolutionalize import TOL, _patch_reference, _plain


def test_upsample_is_exact_on_the_stride_grid() -> None:
    clf = _plain(16, seed=2)
    fcn = convolutionalize(clf, 16)
    image = torch.rand(1, 3, 22, 27, generator=torch.Generator().manual_seed(5))
    up = dense_predict(fcn, image, 16, "upsample")
    ref = _patch_reference(clf, image, 16)
    assert up.shape == ref.shape
    assert (up[..., ::4, ::4] - ref[..., ::4, ::4]).abs().max() <= TOL
    assert (up - ref).abs().max() > 1e-3  # a baseline: not exact between grid points


def test_chunking_does_not_change_results() -> None:
    clf = _plain(15, seed=4)
    fcn = convolutionalize(clf, 15)
    image = torch.rand(1, 3, 30, 18, generator=torch.Generator().manual_seed(6))
    for method in ("atrous", "shift_and_stitch", "upsample"):
        whole = dense_predict(fcn, image, 15, method, chunk_rows=64)  # type: ignore[arg-type]
        parts = dense_predict(fcn, image, 15, method, chunk_rows=7 if method == "atrous" else 8)  # type: ignore[arg-type]
        assert (whole - parts).abs().max() <= 1e-6


def test_dense_predictor_module() -> None:
    clf = _plain(16, seed=6)
    model = DensePredictor(convolutionalize(clf, 16))
    image = torch.rand(1, 3, 19, 20, generator=torch.Generator().manual_seed(7))
    assert model.margin == 8
    with torch.no_grad():
        out = model(image)
    assert (out - _patch_reference(clf, image, 16)).abs().max() <= TOL
    # a classifier is convolutionalized by the wrapper (as checkpoint loading does)
    direct = DensePredictor(clf, patch_size=16, method="shift_and_stitch")
    assert direct.fcn.exact and not any(isinstance(m, nn.Linear) for m in direct.modules())
    with torch.no_grad():
        assert (direct(image) - out).abs().max() <= TOL


def test_count_macs_known_answers() -> None:
    assert count_macs(nn.Conv2d(3, 8, 3), (2, 3, 10, 10)) == 2 * 8 * 8 * 8 * 27
    assert count_macs(nn.Conv2d(4, 8, 3, groups=2, dilation=2), (1, 4, 9, 9)) == 8 * 5 * 5 * 2 * 9
    assert count_macs(nn.Sequential(nn.Flatten(), nn.Linear(12, 5)), (3, 3, 2, 2)) == 3 * 5 * 12
    # per patch, the classifier and its convolutionalized form cost the same
    clf = PlainPatchClassifier(patch_size=32, widths=(4, 8), dense=(8,))
    fcn = convolutionalize(clf, 32)
    assert count_macs(clf, (1, 3, 32, 32)) == count_macs(fcn, (1, 3, 32, 32))
