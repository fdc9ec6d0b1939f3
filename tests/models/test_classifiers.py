"""Known answers for histoseg.models.classifiers: layer layout, shapes, errors, the classifier built from a config."""

from __future__ import annotations

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
from histoseg.models.normalize import Normalize


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
