"""Batch augmentation: label-exact geometry, colour jitter and HED stain jitter with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import rgb2hed

from histoseg.transforms import RGB_FROM_HED, augment_batch, hed_jitter, to_float_image


def _batch(n: int = 4, size: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(n, 3, size, size, generator=g) * 0.8 + 0.1
    mask = (image[:, 0] * 1000).long()  # a label that records where each pixel came from
    weight = image[:, 1].clone()
    return image, mask, weight


def test_geometry_moves_image_mask_and_weight_together() -> None:
    image, mask, weight = _batch()
    out_image, out_mask, out_weight = augment_batch(
        image, mask, weight, color_jitter=0.0, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(out_mask, (out_image[:, 0] * 1000).long())
    assert torch.equal(out_weight, out_image[:, 1])
    # every sample is a flip/rotation of its input: same multiset of values
    for i in range(image.shape[0]):
        assert torch.equal(out_image[i].flatten().sort().values, image[i].flatten().sort().values)
    assert not torch.equal(out_image, image)  # seed 3 turns at least one of four samples


def test_zero_jitter_and_identity_stain_leave_colours() -> None:
    image, _, _ = _batch()
    again = hed_jitter(image, torch.ones(4, 3), torch.zeros(4, 3))
    assert torch.allclose(again, image, atol=1e-5)
    white = torch.ones(1, 3, 2, 2)
    assert torch.equal(hed_jitter(white, torch.full((1, 3), 1.5), torch.zeros(1, 3)), white)


def test_concentrations_match_skimage_rgb2hed() -> None:
    image, _, _ = _batch(1)
    rgb = image[0].permute(1, 2, 0).double().numpy()
    expected = rgb2hed(rgb)  # (H, W, 3); skimage clips negative stains to 0
    od = -np.log(np.maximum(rgb, 1e-6))  # ours: natural-log optical density
    ours = od @ torch.linalg.inv(RGB_FROM_HED).numpy()
    assert np.allclose(np.maximum(ours, 0) / -np.log(1e-6), expected, atol=1e-9)


def test_scaling_haematoxylin_doubles_its_optical_density() -> None:
    # a pixel of pure haematoxylin at concentration 0.5: I = exp(-0.5 * h)
    h = RGB_FROM_HED[0].float()
    pixel = torch.exp(-0.5 * h).view(1, 3, 1, 1)
    doubled = hed_jitter(pixel, torch.tensor([[2.0, 1.0, 1.0]]), torch.zeros(1, 3))
    assert torch.allclose(doubled, torch.exp(-1.0 * h).view(1, 3, 1, 1), rtol=1e-5)
    shifted = hed_jitter(pixel, torch.ones(1, 3), torch.tensor([[0.1, 0.0, 0.0]]))
    assert torch.allclose(shifted, torch.exp(-0.6 * h).view(1, 3, 1, 1), rtol=1e-5)


def test_stain_jitter_is_seeded_bounded_and_leaves_labels() -> None:
    image, mask, weight = _batch()
    runs = [
        augment_batch(
            image,
            mask,
            weight,
            color_jitter=0.0,
            stain_jitter=0.2,
            generator=torch.Generator().manual_seed(5),
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0][0], runs[1][0])
    plain = augment_batch(image, mask, weight, color_jitter=0.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(runs[0][1], plain[1]) and torch.equal(runs[0][2], plain[2])
    changed = (runs[0][0] - plain[0]).abs()
    assert 0.005 < float(changed.mean()) < 0.1
    assert float(runs[0][0].min()) >= 0.0 and float(runs[0][0].max()) <= 1.0


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float64])
def test_to_float_image(dtype: torch.dtype) -> None:
    image = torch.full((1, 3, 2, 2), 255 if dtype == torch.uint8 else 1.0, dtype=dtype)
    out = to_float_image(image)
    assert out.dtype == torch.float32 and torch.equal(out, torch.ones(1, 3, 2, 2))


def test_datamodule_applies_stain_jitter_to_training_batches_only() -> None:
    from types import SimpleNamespace

    from histoseg.datamodules import SlideDataModule
    from histoseg.training_options import Augmentation

    image, mask, weight = _batch()
    batch = {"image": (image * 255).to(torch.uint8), "mask": mask, "weight": weight}
    outputs = {}
    for stain in (0.0, 0.2):
        for training in (True, False):
            dm = SlideDataModule(augmentation=Augmentation(color_jitter=0.0, stain_jitter=stain), seed=0)
            dm.trainer = SimpleNamespace(training=training)  # what Lightning sets while fitting
            outputs[stain, training] = dm.on_after_batch_transfer(dict(batch), 0)
    assert torch.equal(outputs[0.0, True]["mask"], outputs[0.2, True]["mask"])  # same flips/turns
    assert not torch.allclose(outputs[0.0, True]["image"], outputs[0.2, True]["image"], atol=1e-3)
    assert torch.equal(outputs[0.2, False]["image"], to_float_image(batch["image"]))
