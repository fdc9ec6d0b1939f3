"""Known answers for histoseg.models.convolutionalize (a patch classifier turned into a dense network)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from histoseg.errors import ConfigError
from histoseg.models.classifiers import PlainPatchClassifier
from histoseg.models.convolutionalize import convolutionalize
from histoseg.models.dense import dense_predict
from histoseg.models.normalize import Normalize

TOL = 1e-4


def _randomise_bn(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters; eval mode."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.4 * torch.rand(n, generator=gen) - 0.2)
    return model.eval()


def _patch_reference(clf: nn.Module, image: torch.Tensor, p: int, pad_mode: str = "reflect") -> torch.Tensor:
    """The classifier applied to every patch of the padded image (the convention), (N, C, H, W)."""
    n, c, h, w = image.shape
    pads = (p // 2, p - 1 - p // 2) * 2
    padded = F.pad(image, pads, mode=pad_mode)
    patches = padded.unfold(2, p, 1).unfold(3, p, 1)  # (N, C, H, W, P, P)
    assert patches.shape[2:4] == (h, w)
    flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, p, p)
    with torch.no_grad():
        logits = clf.eval()(flat)
    return logits.reshape(n, h, w, -1).permute(0, 3, 1, 2)


def _plain(p: int, seed: int = 0, pool: str = "max") -> nn.Module:
    torch.manual_seed(seed)
    clf = PlainPatchClassifier(num_classes=4, patch_size=p, widths=(6, 8), dense=(12,), dropout=0.3)
    if pool == "avg":
        for name in ("pool1", "pool2"):
            setattr(clf, name, nn.AvgPool2d(2))
    return _randomise_bn(clf, torch.Generator().manual_seed(seed + 1))


def _hand_built(p: int, seed: int = 0) -> nn.Sequential:
    """Not a histoseg class: nested Sequential, strided conv, AvgPool2d(3, 2), BatchNorm1d, GELU."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.LeakyReLU(0.1)),
        nn.AvgPool2d(3, stride=2),
        nn.Conv2d(5, 6, 3, stride=2),
        nn.SiLU(),
        nn.MaxPool2d(2, stride=1),
        nn.Flatten(),
    )
    with torch.no_grad():
        feat = trunk(torch.zeros(1, 3, p, p)).shape[1]
    net = nn.Sequential(
        *trunk, nn.Linear(feat, 10), nn.BatchNorm1d(10), nn.GELU(), nn.Dropout(0.5), nn.Linear(10, 3)
    )
    return _randomise_bn(net, torch.Generator().manual_seed(seed + 2))  # type: ignore[return-value]


def _check_all_methods(clf: nn.Module, p: int, image: torch.Tensor, pad_mode: str = "reflect") -> None:
    fcn = convolutionalize(clf, p)
    assert fcn.exact
    ref = _patch_reference(clf, image, p, pad_mode)
    atrous = dense_predict(fcn, image, p, "atrous", pad_mode)
    sas = dense_predict(fcn, image, p, "shift_and_stitch", pad_mode)
    assert atrous.shape == sas.shape == ref.shape
    n, _, h, w = image.shape
    gen = torch.Generator().manual_seed(p)
    lo, hi_y, hi_x = p // 2, h - (p - 1 - p // 2), w - (p - 1 - p // 2)  # patches fully inside the image
    interior = []
    if hi_y > lo and hi_x > lo:
        ys = torch.randint(lo, hi_y, (6,), generator=gen).tolist()
        xs = torch.randint(lo, hi_x, (6,), generator=gen).tolist()
        interior = list(zip(ys, xs, strict=True))
    border = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (1, w // 2), (h // 2, 0), (h - 2, w - 3)]
    for i, j in interior + border:
        padded = F.pad(image, (p // 2, p - 1 - p // 2) * 2, mode=pad_mode)
        with torch.no_grad():
            direct = clf(padded[..., i : i + p, j : j + p])  # (N, C)
        assert (atrous[..., i, j] - direct).abs().max() <= TOL, (i, j)
        assert (sas[..., i, j] - direct).abs().max() <= TOL, (i, j)
    # and everywhere
    assert (atrous - sas).abs().max() <= TOL
    assert (atrous - ref).abs().max() <= TOL
    # the map is not trivially constant
    assert ref.std() > 1e-3


@pytest.mark.parametrize("p", [20, 21])
def test_hand_built_sequential(p: int) -> None:
    net = _hand_built(p, seed=p)
    fcn = convolutionalize(net, p)
    assert fcn.output_stride == 4
    assert not any(isinstance(m, (nn.Linear, nn.Flatten, nn.BatchNorm1d)) for m in fcn.modules())
    image = torch.rand(2, 3, 25, 22, generator=torch.Generator().manual_seed(p))
    _check_all_methods(net, p, image)


def test_convolutionalize_on_patch_gives_logits() -> None:
    torch.manual_seed(0)
    clf = _randomise_bn(PlainPatchClassifier(), torch.Generator().manual_seed(0))
    clf.train()  # convolutionalize must not change the classifier's mode
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    fcn = convolutionalize(clf, 64)
    assert clf.training and not fcn.training
    assert (fcn.output_stride, fcn.patch_size, fcn.feature_shape) == (8, 64, (128, 6, 6))
    with torch.no_grad():
        logits = clf.eval()(x)
        out = fcn(x)
    assert out.shape == (3, 5, 1, 1)
    assert (out[..., 0, 0] - logits).abs().max() <= 1e-5
    # the first dense layer became a 6x6 conv with reshaped weights, the last a 1x1 conv
    convs = [m for m in fcn if isinstance(m, nn.Conv2d)]
    assert convs[-2].kernel_size == (6, 6) and convs[-1].kernel_size == (1, 1)
    assert torch.equal(convs[-2].weight.flatten(1), clf.fc1.weight)
    assert torch.equal(convs[-1].weight.flatten(1), clf.logits.weight)
    # on a larger image: the map at stride 8 scores the crops at multiples of 8
    big = torch.rand(1, 3, 64 + 8 * 2, 64 + 8 * 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        heat = fcn(big)
        crop = clf(big[..., 16 : 16 + 64, 8 : 8 + 64])
    assert heat.shape == (1, 5, 3, 4)
    assert (heat[..., 2, 1] - crop).abs().max() <= 1e-5


@pytest.mark.parametrize(
    ("layer", "name"),
    [
        (nn.Softmax(dim=1), "Softmax"),
        (nn.Upsample(scale_factor=2), "Upsample"),
        (nn.AdaptiveAvgPool2d(1), "AdaptiveAvgPool2d"),
        (nn.MaxPool2d(2, ceil_mode=True), "MaxPool2d"),
        (nn.Linear(4, 4), "Linear"),
    ],
)
def test_unsupported_layer_raises_type_error_naming_it(layer: nn.Module, name: str) -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), layer, nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(TypeError, match=name):
        convolutionalize(net, 12)


def test_unsupported_layer_after_flatten_and_non_sequential() -> None:
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 8 * 8, 4), nn.Softmax(dim=1))
    with pytest.raises(TypeError, match="Softmax"):
        convolutionalize(net, 10)
    with pytest.raises(TypeError, match="LSTM"):
        convolutionalize(nn.LSTM(3, 3), 10)


def test_user_errors() -> None:
    clf = _plain(16)
    fcn = convolutionalize(clf, 16)
    image = torch.rand(1, 3, 20, 20)
    with pytest.raises(ConfigError, match="method"):
        dense_predict(fcn, image, 16, "nearest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pad_mode"):
        dense_predict(fcn, image, 16, pad_mode="mirror")
    with pytest.raises(ConfigError, match="patch_size=16"):
        dense_predict(fcn, image, 15)
    with pytest.raises(ConfigError, match="replicate"):
        dense_predict(fcn, torch.rand(1, 3, 8, 30), 16)
    with pytest.raises(ValueError, match="float"):
        dense_predict(fcn, (image * 255).to(torch.uint8), 16)
    with pytest.raises(ConfigError, match="patch_size"):
        convolutionalize(clf, 20)  # the first Linear does not fit a 20-px patch


def test_normalize_is_kept_pointwise() -> None:
    norm = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    net = nn.Sequential(norm, nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    fcn = convolutionalize(net, 6)
    assert isinstance(fcn[0], Normalize) and fcn[0] is not norm
    assert fcn.output_stride == 1
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert (fcn(x)[..., 0, 0] - net(x)).abs().max() <= 1e-6
