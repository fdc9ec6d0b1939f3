
import torch
import torch.nn.functional as F

from histoseg.models.losses import weighted_cross_entropy


def test_weighted_ce_with_unit_weights_equals_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 8, 8, generator=g)
    target = torch.randint(0, 5, (2, 8, 8), generator=g)
    target[0, :2] = 255
    ours = weighted_cross_entropy(logits, target, torch.ones(2, 8, 8))
    ref = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(weighted_cross_entropy(logits, target, None), ref, atol=1e-6)


def test_ignored_pixels_get_zero_gradient():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (1, 4, 4))
    target[0, 0] = 255
    weight = torch.rand(1, 4, 4) + 0.5
    weighted_cross_entropy(logits, target, weight).backward()
    assert torch.count_nonzero(logits.grad[0, :, 0]) == 0
    assert torch.count_nonzero(logits.grad[0, :, 1:]) > 0


def test_all_unlabelled_batch_gives_zero_loss_not_nan():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = weighted_cross_entropy(logits, torch.full((1, 4, 4), 255), None)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_weighting_matches_manual_sum():
    logits = torch.randn(1, 2, 2, 2)
    target = torch.tensor([[[0, 1], [1, 0]]])
    weight = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    ce = F.cross_entropy(logits, target, reduction="none")
    assert torch.allclose(weighted_cross_entropy(logits, target, weight), (ce * weight).sum() / weight.sum())
