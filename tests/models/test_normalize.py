"""models/normalize.py: the ImageNet normalisation layer, known answers, and one such layer in every network."""

from __future__ import annotations

import pytest
import torch

from histoseg.errors import ConfigError
from histoseg.models.classifiers import (
    PlainPatchClassifier,
)
from histoseg.models.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize
from histoseg.models.segmentation import build_segmentation_model


def test_normalize_known_answer() -> None:
    norm = Normalize((0.2, 0.4, 0.6), (0.1, 0.2, 0.5))
    x = torch.tensor([0.2, 0.6, 0.1]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    out = norm(x)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.0, 1.0, -1.0]))
    assert norm(torch.zeros(4, 3)).shape == (4, 3)  # also works on (N, C) after Flatten
    assert sorted(dict(norm.named_buffers())) == ["mean", "std"] and not list(norm.parameters())
    with pytest.raises(ConfigError):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ConfigError, match="same non-zero length"):
        Normalize((0.5, 0.5), (0.25,))


def test_one_normalize_with_the_imagenet_statistics_in_every_network() -> None:
    """U-Nets, plain and encoder classifiers all start with the same module and the same constants;
    a half-precision input stays half (the buffers follow its dtype) and gives the float32 answer."""
    unet = build_segmentation_model(3, encoder="resnet18", encoder_depth=3, decoder_channels=(8, 8, 8))
    plain = PlainPatchClassifier(num_classes=3, patch_size=32, widths=(8, 8))
    for norm in (unet.normalize, plain.normalize):
        assert type(norm) is Normalize
        assert norm.mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)
        assert norm.std.flatten().tolist() == pytest.approx(IMAGENET_STD)
        assert norm.mean.shape == (1, 3, 1, 1) and norm.mean.dtype == torch.float32
    x = torch.tensor([0.485, 0.456 + 0.224, 0.406 - 2 * 0.225]).view(1, 3, 1, 1)
    assert unet.normalize(x).flatten().tolist() == pytest.approx([0.0, 1.0, -2.0], abs=1e-6)
    half = unet.normalize(x.half())
    assert half.dtype == torch.float16
    assert half.float().flatten().tolist() == pytest.approx([0.0, 1.0, -2.0], abs=1e-2)
