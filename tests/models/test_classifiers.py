"""Known answers for histoseg.models.classifiers: layer layout, shapes, errors, encoder weights."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from histoseg.errors import ConfigError
from histoseg.models.classifiers import (
    EncoderPatchClassifier,
    PlainPatchClassifier,
    build_classifier,
    plain_feature_size,
)
from histoseg.models.convolutionalize import convolutionalize
from histoseg.models.dense import DensePredictor, dense_predict
from histoseg.models.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize
from histoseg.models.segmentation import build_segmentation_model
from histoseg.models.weights import load_encoder_weights, match_state_dict


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


def test_plain_default_layout_and_shapes() -> None:
    clf = PlainPatchClassifier()
    assert isinstance(clf, nn.Sequential)
    assert (clf.patch_size, clf.num_classes, clf.output_stride, clf.feature_shape) == (64, 5, 8, (128, 6, 6))
    names = [n for n, _ in clf.named_children()]
    assert names[:5] == ["normalize", "conv1", "bn1", "relu1", "pool1"]
    assert names[-5:] == ["flatten", "fc1", "fc_relu1", "fc_drop1", "logits"]
    convs = [m for m in clf if isinstance(m, nn.Conv2d)]
    assert [c.padding for c in convs] == [(0, 0)] * 3 and [c.out_channels for c in convs] == [32, 64, 128]
    assert clf.fc1.in_features == 128 * 6 * 6 and clf.logits.out_features == 5
    assert clf.fc_drop1.p == 0.3
    clf.eval()
    with torch.no_grad():
        assert clf(torch.rand(2, 3, 64, 64)).shape == (2, 5)


def test_plain_custom_and_feature_sizes() -> None:
    assert plain_feature_size(64, 3) == 6
    assert plain_feature_size(22, 3) == 1
    assert plain_feature_size(21, 3) == 0
    assert plain_feature_size(200, 4) == 10  # 198/99/97/48/46/23/21/10
    clf = PlainPatchClassifier(
        num_classes=3, patch_size=22, in_channels=1, widths=(4, 4, 4), dense=(), dropout=0.0
    )
    assert clf.feature_shape == (4, 1, 1)
    assert clf.normalize.mean.flatten().tolist() == [0.5]
    assert [n for n, _ in clf.named_children()][-2:] == ["flatten", "logits"]
    with torch.no_grad():
        assert clf.eval()(torch.rand(1, 1, 22, 22)).shape == (1, 3)


def test_plain_too_small_patch_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"patch_size=21 .* patch_size >= 22"):
        PlainPatchClassifier(patch_size=21)
    with pytest.raises(ConfigError, match="dropout"):
        PlainPatchClassifier(dropout=1.0)
    with pytest.raises(ConfigError, match="num_classes"):
        PlainPatchClassifier(num_classes=0)


@pytest.fixture(scope="module")
def resnet_clf() -> EncoderPatchClassifier:
    torch.manual_seed(0)
    return EncoderPatchClassifier("resnet18", num_classes=5, patch_size=64).eval()


def test_encoder_classifier_shapes(resnet_clf: EncoderPatchClassifier) -> None:
    clf = resnet_clf
    assert (clf.output_stride, clf.feature_shape, clf.patch_size) == (32, (512, 2, 2), 64)
    assert isinstance(clf.features.normalize, Normalize)
    assert isinstance(clf.head[0], nn.Flatten) and clf.head.fc1.in_features == 512 * 2 * 2
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert clf.features(x).shape == (2, 512, 2, 2)
        assert clf(x).shape == (2, 5)


def test_encoder_head_convolutionalized(resnet_clf: EncoderPatchClassifier) -> None:
    clf = resnet_clf
    fcn = convolutionalize(clf, 64)
    assert (fcn.output_stride, fcn.patch_size, fcn.exact) == (32, 64, False)
    convs = [m for m in fcn if isinstance(m, nn.Conv2d)]  # top level: the head only, trunk is opaque
    assert [c.kernel_size for c in convs] == [(2, 2), (1, 1)]
    assert torch.equal(convs[0].weight.reshape(256, -1), clf.head.fc1.weight)
    assert torch.equal(convs[1].weight.flatten(1), clf.head.logits.weight)
    assert not any(isinstance(m, (nn.Linear, nn.Flatten)) for m in fcn)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    big = torch.rand(1, 3, 128, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (fcn(x)[..., 0, 0] - clf(x)).abs().max() <= 1e-4  # exact at exactly patch_size
        assert fcn(big).shape == (1, 5, 3, 2)
    assert dense_predict(fcn, big[..., :40, :50], 64, "upsample").shape == (1, 5, 40, 50)
    with pytest.raises(TypeError, match="TimmTrunk"):
        dense_predict(fcn, big, 64, "atrous")
    with pytest.raises(TypeError, match="TimmTrunk"):
        DensePredictor(clf, method="atrous")
    assert DensePredictor(clf, method="upsample").fcn.output_stride == 32


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


def test_encoder_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown timm encoder"):
        EncoderPatchClassifier("no_such_net_xyz")
    with pytest.raises(ConfigError, match="patch_size"):
        EncoderPatchClassifier("resnet18", patch_size=1)


def test_build_classifier_from_config() -> None:
    clf = build_classifier("plain", num_classes=3, patch_size=32, widths=[8, 16], dense=[12], dropout=0.1)
    assert isinstance(clf, PlainPatchClassifier)
    assert (clf.feature_shape, clf.logits.out_features, clf.fc1.out_features) == ((16, 6, 6), 3, 12)
    enc = build_classifier("encoder", encoder="resnet18", num_classes=2, patch_size=64, weights=None)
    assert isinstance(enc, EncoderPatchClassifier) and enc.head.logits.out_features == 2
    with pytest.raises(ConfigError, match="unknown option.*colour"):
        build_classifier("plain", colour="red")
    with pytest.raises(ConfigError, match="arch 'vit'"):
        build_classifier("vit")
