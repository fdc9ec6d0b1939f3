"""SegmentationTask wiring: the consistency loss's second view and the learning-rate schedule."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from histoseg.errors import ConfigError
from histoseg.models.regularizers import consistency_loss, crf_loss
from histoseg.tasks import SegmentationTask
from histoseg.transforms import dihedral, undo_dihedral


def small_task(**kwargs) -> SegmentationTask:
    return SegmentationTask(
        encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=[16, 8, 8], **kwargs
    )


def test_second_view_is_mapped_back_to_the_first():
    """A pointwise network is exactly equivariant: the mapped-back view equals the plain logits, for
    square and rectangular batches; a 3 x 3 convolution is not, and its second view is one of the 7
    non-identity symmetries, each drawn."""
    task = small_task()
    torch.manual_seed(0)
    task.network = nn.Conv2d(3, 4, 1)
    for shape in ((2, 3, 8, 8), (2, 3, 6, 10)):
        image = torch.rand(shape)
        for _ in range(5):
            assert torch.allclose(task.transformed_view_logits(image), task(image), atol=1e-6)
    task.network = nn.Conv2d(3, 4, 3, padding=1)
    image = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        candidates = {
            (k, f): undo_dihedral(task(dihedral(image, k, f)), k, f) for k in range(4) for f in (False, True)
        }
    drawn = set()
    for _ in range(100):
        view = task.transformed_view_logits(image)
        assert not view.requires_grad
        matches = [key for key, value in candidates.items() if torch.allclose(view, value, atol=1e-6)]
        assert len(matches) == 1
        drawn.add(matches[0])
    assert drawn == set(candidates) - {(0, False)}
    rect = torch.rand(1, 3, 6, 10)
    for _ in range(20):
        assert task.transformed_view_logits(rect).shape == (1, 4, 6, 10)


def test_consistency_term_in_the_training_loss():
    """The loss with consistency weight w is the loss without it plus w x the pseudo-label CE on the
    unlabelled pixels; evaluation losses never include it."""
    torch.manual_seed(1)
    image = torch.rand(2, 3, 16, 16)
    mask = torch.full((2, 16, 16), 255)
    mask[:, 4:8, 4:8] = 1
    batch = {"image": image, "mask": mask}
    plain, with_consistency = small_task(), small_task(consistency_weight=2.0, consistency_threshold=0.0)
    for task in (plain, with_consistency):
        task.network = nn.Conv2d(3, 4, 1)  # equivariant: the second view equals the logits
        torch.nn.init.constant_(task.network.weight, 0.0)
        torch.nn.init.constant_(task.network.bias, 0.1)
        with torch.no_grad():
            task.network.weight[:, :, 0, 0] = torch.arange(12.0).view(4, 3) / 3
        task.train()
    with torch.no_grad():
        logits = plain(image)
    expected = plain.compute_loss(logits, batch) + 2.0 * consistency_loss(logits, logits, mask == 255, 0.0)
    got = with_consistency.compute_loss(logits, batch)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    assert float(got) > float(plain.compute_loss(logits, batch)) + 1e-3
    with_consistency.eval()
    assert float(with_consistency.compute_loss(logits, batch)) == pytest.approx(
        float(plain.compute_loss(logits, batch))
    )


def test_consistency_bad_settings():
    with pytest.raises(ConfigError, match="model.consistency_weight=-1"):
        small_task(consistency_weight=-1.0)
    with pytest.raises(ConfigError, match="model.consistency_threshold=1.0"):
        small_task(consistency_threshold=1.0)


@pytest.mark.parametrize("total", [1, 2, 3, 19, 20, 21, 40, 300])
def test_one_cycle_schedule_for_any_number_of_steps(total):
    """Warm-up to the peak rate then cosine decay, for every fit length (OneCycleLR divides by zero
    when the warm-up is one step: 20 steps at 5 %)."""
    task = small_task(lr=0.01)
    task.trainer = SimpleNamespace(estimated_stepping_batches=total)
    config = task.configure_optimizers()
    if total < 3:
        assert isinstance(config, torch.optim.Optimizer)
        return
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = rates.index(max(rates))
    assert max(rates) == pytest.approx(0.01)
    assert rates[0] == pytest.approx(0.001)
    assert 1 <= peak <= max(2, round(0.05 * total))
    assert rates[-1] < rates[peak] / 10
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :], strict=False))


def test_crf_downsample_reaches_the_loss():
    torch.manual_seed(2)
    image = torch.rand(1, 3, 16, 16)
    batch = {"image": image, "mask": torch.full((1, 16, 16), 255)}
    logits = torch.randn(1, 4, 16, 16)
    for s in (1, 4):
        task = small_task(regularizer="crf", regularizer_weight=1.0, crf_downsample=s)
        task.train()
        assert float(task.compute_loss(logits, batch)) == pytest.approx(
            float(crf_loss(logits, image, downsample=s))
        )
    with pytest.raises(ConfigError, match="model.crf_downsample=0"):
        small_task(crf_downsample=0)
