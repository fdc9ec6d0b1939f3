"""models/weights.py: encoder weights from a local file, matched by name else by position; one loader
and one error for both model families."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from histoseg.errors import ConfigError
from histoseg.models.classifiers import (
    EncoderPatchClassifier,
)
from histoseg.models.segmentation import build_segmentation_model
from histoseg.models.weights import load_encoder_weights, match_state_dict


def test_encoder_weights_from_local_file(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(4)
    source = timm.create_model("resnet18", pretrained=False, num_classes=7)  # with fc.* keys, ignored on load
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    clf = EncoderPatchClassifier("resnet18", patch_size=64, weights=str(path))
    loaded = clf.features.encoder.model.state_dict()
    assert torch.equal(loaded["conv1.weight"], source.state_dict()["conv1.weight"])
    assert torch.equal(loaded["layer4.1.bn2.running_var"], source.state_dict()["layer4.1.bn2.running_var"])

    with pytest.raises(ConfigError, match="not found"):
        EncoderPatchClassifier("resnet18", weights=str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        EncoderPatchClassifier("resnet18", weights=str(tmp_path / "junk.pt"))
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "partial.pt")
    with pytest.raises(ConfigError, match="only 1 of 120 encoder tensors match"):
        EncoderPatchClassifier("resnet18", weights=str(tmp_path / "partial.pt"))


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "encoder weights file not found"),
        (b"not a checkpoint", "cannot read encoder weights"),
        ({"epoch": 3}, "not a state dict of tensors"),
        ({"conv.weight": torch.zeros(2, 2)}, "only 0 of"),
    ],
)
def test_one_weights_loader_one_error_for_both_model_families(tmp_path: Path, content, message) -> None:
    """The same mistake in model.encoder_weights is the same ConfigError, naming the file and the
    option, whether the encoder belongs to a U-Net or to a patch classifier."""
    path = tmp_path / "weights.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    errors = []
    for build in (
        lambda: build_segmentation_model(3, encoder="resnet18", encoder_weights=str(path), encoder_depth=3,
                                         decoder_channels=(8, 8, 8)),
        lambda: EncoderPatchClassifier("resnet18", weights=str(path)),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=message) as info:
            build()
        errors.append(str(info.value))
    assert all(str(path) in e and "model.encoder_weights" in e for e in errors)
    assert re.sub(r"\d+", "N", errors[0]) == re.sub(r"\d+", "N", errors[1])


def test_weights_matched_by_name_else_by_position(tmp_path: Path) -> None:
    """Renamed tensors of the right shapes load by position (a head of another shape is skipped);
    same names load by name; the loaded count is returned."""
    torch.manual_seed(0)
    source = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(9, 7))
    renamed = {f"_block{i}": v for i, v in enumerate(source.state_dict().values())}
    target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    matched = match_state_dict(renamed, target.state_dict())
    assert list(matched) == list(target.state_dict())
    assert all(torch.equal(matched[k], source.state_dict()[k]) for k in target.state_dict())
    torch.save({"state_dict": renamed}, tmp_path / "wrapped.pt")
    assert load_encoder_weights(target, tmp_path / "wrapped.pt") == 7  # 2 conv + 5 BatchNorm tensors
    assert torch.equal(target[0].weight, source[0].weight)
    assert match_state_dict(source.state_dict(), target.state_dict()).keys() == target.state_dict().keys()
