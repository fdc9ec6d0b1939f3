from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from histoseg.errors import ConfigError, LabelError
from histoseg.models.regularizers import crf_loss, entropy_loss, partial_cross_entropy
from histoseg.transforms import dihedral, undo_dihedral


def _sparse_target(gen: torch.Generator, shape=(2, 6, 7), classes=4, labelled=0.3) -> torch.Tensor:
    target = torch.randint(0, classes, shape, generator=gen)
    target[torch.rand(shape, generator=gen) > labelled] = 255
    return target


def test_partial_cross_entropy_equals_torch_with_ignore_index():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, 7, generator=gen, dtype=torch.float64)
    target = _sparse_target(gen)
    assert torch.allclose(
        partial_cross_entropy(logits, target), F.cross_entropy(logits, target, ignore_index=255)
    )
    weight = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    assert torch.allclose(
        partial_cross_entropy(logits, target.to(torch.uint8), weight=weight),
        F.cross_entropy(logits, target, weight=weight, ignore_index=255),
    )
    # Classifier shape (N, C) with (N,) targets.
    assert torch.allclose(
        partial_cross_entropy(logits[:, :, 0, 0], target[:, 0, 0].clamp_max(3)),
        F.cross_entropy(logits[:, :, 0, 0], target[:, 0, 0].clamp_max(3)),
    )


def test_partial_cross_entropy_known_value_and_no_labels():
    logits = torch.zeros(1, 3, 2, 2, requires_grad=True)
    target = torch.full((1, 2, 2), 255)
    target[0, 0, 0] = 2
    assert float(partial_cross_entropy(logits, target).detach()) == pytest.approx(math.log(3))
    none = partial_cross_entropy(logits, torch.full((1, 2, 2), 255))
    assert none.item() == 0.0 and none.requires_grad
    none.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    with pytest.raises(LabelError, match="class index 7 but the model has 3 classes"):
        partial_cross_entropy(logits, torch.full((1, 2, 2), 7))


def test_entropy_loss_known_values():
    uniform = torch.zeros(2, 5, 3, 3)
    assert float(entropy_loss(uniform)) == pytest.approx(math.log(5))
    confident = torch.zeros(1, 5, 3, 3)
    confident[:, 0] = 100.0
    assert float(entropy_loss(confident)) == pytest.approx(0.0, abs=1e-12)
    # Two classes at p = (0.5, 0.5) -> log 2 on half the pixels, 0 on the rest.
    mixed = torch.zeros(1, 2, 2, 2)
    mixed[0, 0, 0] = 100.0
    mask = torch.tensor([[[True, True], [True, True]]])
    assert float(entropy_loss(mixed, mask)) == pytest.approx(math.log(2) / 2)
    only_uncertain = torch.tensor([[[False, False], [True, True]]])
    assert float(entropy_loss(mixed, only_uncertain)) == pytest.approx(math.log(2))
    logits = torch.zeros(1, 2, 2, 2, requires_grad=True)
    empty = entropy_loss(logits, torch.zeros(1, 2, 2, dtype=torch.bool))
    assert empty.item() == 0.0 and empty.requires_grad


def _crf_brute_force(logits, image, sigma_rgb, sigma_xy, kernel_size):
    prob = torch.softmax(logits, 1)
    n, _, h, w = prob.shape
    half = kernel_size // 2
    total = 0.0
    for b in range(n):
        for y in range(h):
            for x in range(w):
                for yy in range(max(0, y - half), min(h, y + half + 1)):
                    for xx in range(max(0, x - half), min(w, x + half + 1)):
                        if (yy, xx) == (y, x):
                            continue
                        colour = float(((image[b, :, y, x] - image[b, :, yy, xx]) ** 2).sum())
                        dist = (y - yy) ** 2 + (x - xx) ** 2
                        weight = math.exp(-colour / (2 * sigma_rgb**2) - dist / (2 * sigma_xy**2))
                        total += weight * float(prob[b, :, y, x] @ (1 - prob[b, :, yy, xx]))
    return total / (n * h * w)


def test_crf_loss_matches_brute_force_definition():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64)
    image = torch.rand(2, 3, 5, 6, generator=gen, dtype=torch.float64)
    for kernel in (3, 5, 7):
        got = float(crf_loss(logits, image, sigma_rgb=0.3, sigma_xy=2.0, kernel_size=kernel))
        assert got == pytest.approx(_crf_brute_force(logits, image, 0.3, 2.0, kernel), rel=1e-10)


def test_crf_loss_known_answers():
    onehot = torch.zeros(1, 3, 8, 8)
    onehot[:, 1] = 50.0
    assert float(crf_loss(onehot, torch.full((1, 3, 8, 8), 0.5))) == 0.0
    assert float(crf_loss(onehot, torch.rand(1, 3, 8, 8))) == 0.0
    # Two pixels, a hard cut between them on a uniform image: 2 ordered pairs x exp(-1/(2*25)) / 2 pixels.
    two = torch.tensor([[[[60.0, 0.0]], [[0.0, 60.0]]]], dtype=torch.float64)
    flat = torch.zeros(1, 3, 1, 2, dtype=torch.float64)
    assert float(crf_loss(two, flat, sigma_xy=5.0, kernel_size=3)) == pytest.approx(math.exp(-0.02))
    # Across a colour edge of 0.1 in each of 3 channels, sigma_rgb 0.1: extra factor exp(-1.5).
    edge = flat.clone()
    edge[..., 1] = 0.1
    assert float(crf_loss(two, edge, kernel_size=3)) == pytest.approx(math.exp(-0.02 - 1.5))
    # uint8 images are scaled to [0, 1].
    assert float(crf_loss(two, (edge * 255).round().to(torch.uint8), kernel_size=3)) == pytest.approx(
        math.exp(-0.02 - 3 * (26 / 255) ** 2 / 0.02)
    )


def test_crf_loss_cut_inside_uniform_region_costs_more_than_at_image_edge():
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 1.0  # black left half, white right half
    at_edge = torch.zeros(1, 2, 16, 16)
    at_edge[:, 0, :, :8] = 30.0
    at_edge[:, 1, :, 8:] = 30.0
    inside = torch.zeros(1, 2, 16, 16)
    inside[:, 0, :, :4] = 30.0
    inside[:, 1, :, 4:] = 30.0
    loss_edge = float(crf_loss(at_edge, image, kernel_size=5))
    loss_inside = float(crf_loss(inside, image, kernel_size=5))
    assert loss_edge < 1e-6 < loss_inside
    assert loss_inside > 100 * loss_edge


def test_crf_loss_gradient_and_validation():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    image = torch.rand(1, 3, 4, 5, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: crf_loss(z, image, sigma_rgb=0.5, kernel_size=3), (logits,))
    assert torch.autograd.gradcheck(lambda z: entropy_loss(z), (logits,))
    target = torch.full((1, 4, 5), 255)
    target[0, 1, 1], target[0, 2, 3] = 0, 2
    assert torch.autograd.gradcheck(lambda z: partial_cross_entropy(z, target), (logits,))
    with pytest.raises(ConfigError):
        crf_loss(logits, image, kernel_size=4)
    with pytest.raises(ValueError):
        crf_loss(logits, image[..., :3])


def test_dihedral_gives_the_eight_symmetries_and_undo_inverts_them():
    x = torch.arange(2 * 3 * 4 * 4).view(2, 3, 4, 4)
    seen = set()
    for k in range(4):
        for flip in (False, True):
            y = dihedral(x, k, flip)
            assert torch.equal(undo_dihedral(y, k, flip), x)
            seen.add(tuple(y[0, 0].flatten().tolist()))
    assert len(seen) == 8
    # known cases: a quarter turn counter-clockwise moves the top-right corner to the top-left
    assert dihedral(x, 1, False)[0, 0, 0, 0] == x[0, 0, 0, 3]
    assert torch.equal(dihedral(x, 0, True), x.flip(-1))
    assert torch.equal(dihedral(x, 2, False), x.flip(-1).flip(-2))
    # rectangles keep their shape under half turns and mirrors
    rect = torch.arange(6).view(1, 1, 2, 3)
    assert torch.equal(undo_dihedral(dihedral(rect, 2, True), 2, True), rect)
