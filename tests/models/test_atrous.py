"""models/atrous.py: the atrous (shift-and-stitch) network equals patch-by-patch classification."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from histoseg.models.atrous import atrous_network
from histoseg.models.convolutionalize import convolutionalize
from tests.models.test_convolutionalize import _check_all_methods, _plain


@pytest.mark.parametrize("p", [16, 15])
def test_atrous_equals_shift_and_stitch_equals_patches_plain(p: int) -> None:
    clf = _plain(p)
    image = torch.rand(2, 3, 27, 29, generator=torch.Generator().manual_seed(3))
    _check_all_methods(clf, p, image)


@pytest.mark.parametrize("p", [16, 15])
def test_avgpool_variant(p: int) -> None:
    clf = _plain(p, seed=5, pool="avg")
    image = torch.rand(1, 3, 21, 26, generator=torch.Generator().manual_seed(4))
    _check_all_methods(clf, p, image)


@pytest.mark.parametrize("pad_mode", ["constant", "replicate"])
def test_other_pad_modes(pad_mode: str) -> None:
    clf = _plain(16, seed=9)
    image = torch.rand(1, 3, 12, 17, generator=torch.Generator().manual_seed(8))
    _check_all_methods(clf, 16, image, pad_mode)


def test_atrous_network_structure_and_shared_weights() -> None:
    clf = _plain(16)
    fcn = convolutionalize(clf, 16)
    net = atrous_network(fcn)
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    pools = [m for m in net if isinstance(m, nn.MaxPool2d)]
    assert [c.dilation for c in convs] == [(1, 1), (2, 2), (4, 4), (4, 4)]
    assert all(c.stride == (1, 1) for c in convs)
    assert [(p.stride, p.dilation) for p in pools] == [(1, (1, 1)), (1, (2, 2))]
    fcn_convs = [m for m in fcn if isinstance(m, nn.Conv2d)]
    assert all(a.weight is b.weight for a, b in zip(convs, fcn_convs, strict=True))
    assert net.output_stride == 1 and net.patch_size == 16
