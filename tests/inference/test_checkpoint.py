"""inference/checkpoint.py: the one set of rules for a checkpoint's histoseg block (check_compatible)."""

from __future__ import annotations

import pytest

from histoseg.errors import CheckpointError
from histoseg.inference.checkpoint import check_compatible

BLOCK = {
    "task": "segmentation",
    "classes": ["a", "b", "c"],
    "mpp": 1.0,
    "patch_size": 64,
    "network": {"num_classes": 3, "encoder_depth": 3},
}


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ({"task": "detection"}, "unknown histoseg task 'detection'"),
        ({"classes": ["a"]}, r"classes \['a'\] must be 2 to 255 distinct names"),
        ({"classes": ["a", " ", "c"]}, "distinct names"),
        ({"mpp": 1000.0}, "mpp 1000.0 must be 0.05-100 microns per pixel"),
        ({"mpp": True}, "mpp True"),
        ({"patch_size": 0}, "patch_size 0 must be 1-8192 pixels"),
        ({"patch_size": 64.0}, "patch_size 64.0"),
        ({"network": {"num_classes": 3, "encoder_depth": 99}}, "not a valid network description"),
        ({"network": {"num_classes": 5, "encoder_depth": 3}}, "is for 5 classes, not the 3"),
    ],
)
def test_every_reader_gets_the_same_block_rules(damage, needle):
    """check_compatible alone (quantify's and fit's route alike) refuses each damaged entry, naming it."""
    assert check_compatible("m.ckpt", BLOCK) == []
    with pytest.raises(CheckpointError, match=f"m.ckpt: histoseg block is inconsistent.*{needle}|{needle}") as caught:
        check_compatible("m.ckpt", {**BLOCK, **damage})
    assert "; " in str(caught.value)
