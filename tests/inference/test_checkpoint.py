"""inference/checkpoint.py: the one set of rules for a checkpoint's histoseg block (check_compatible), its
known answers; a checkpoint that would run code never runs; the quantify loader checks the block and the weights."""

from __future__ import annotations

import pytest
import torch

from histoseg.errors import CheckpointError
from histoseg.inference.checkpoint import check_compatible
from histoseg.tasks import SegmentationTask
from tests.test_tasks import save_checkpoint, small_task


# ---- the one checkpoint-compatibility check: fit/validate, fine-tuning, quantify ------------------------
class _Evil:
    """Unpickling this would create ``marker``: a checkpoint that runs code when loaded unsafely."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_check_compatible_known_answers(tmp_path):
    from histoseg.errors import CheckpointError
    from histoseg.inference.checkpoint import ModelSpec, check_compatible

    task = small_task(classes=["a", "b", "c"])
    block, spec = task.histoseg_block(), task.checkpoint_spec()
    assert spec == ModelSpec("segmentation", ("a", "b", "c"), 1.0, task.network_config())
    assert check_compatible("m.ckpt", block) == [] and check_compatible("m.ckpt", block, spec) == []
    for damage, needle in (
        ({"task": "detection"}, "unknown histoseg task 'detection'"),
        ({"classes": ["a", "b"]}, "inconsistent"),  # network is for 3 classes
        ({"classes": ["a", "a", "b"]}, "inconsistent"),
        ({"mpp": 0.0}, "inconsistent"),
        ({"mpp": "x"}, "inconsistent"),
    ):
        with pytest.raises(CheckpointError, match=needle):
            check_compatible("m.ckpt", {**block, **damage})
    other = small_task(classes=["a", "x", "c"])
    with pytest.raises(
        CheckpointError, match="m.ckpt: a segmentation checkpoint for classes .* does not fit"
    ):
        check_compatible("m.ckpt", other.histoseg_block(), spec, fix="do this")
    deeper = SegmentationTask(
        classes=["a", "b", "c"], encoder="resnet18", encoder_depth=3, decoder_channels=[8, 8, 8]
    )
    with pytest.raises(CheckpointError, match="differs from this config's.*; do this"):
        check_compatible("m.ckpt", deeper.histoseg_block(), spec, fix="do this")
    five = small_task()  # 5 kidney classes, otherwise the same network
    notes = check_compatible("m.ckpt", {**five.histoseg_block(), "mpp": 0.5}, spec, new_head=True)
    assert len(notes) == 2 and "head is re-initialised" in notes[0] and "0.5 um/px" in notes[1]
    with pytest.raises(CheckpointError, match="does not fit"):  # other classes need new_head
        check_compatible("m.ckpt", five.histoseg_block(), spec)


def test_a_checkpoint_that_would_run_code_never_runs(tmp_path):
    """read_checkpoint (weights_only) refuses a pickle with code: fine-tuning and quantify's
    load_predictor fail with a CheckpointError and the payload never runs."""
    from histoseg.errors import CheckpointError
    from histoseg.inference.checkpoint import load_predictor

    marker = tmp_path / "pwned"
    path = save_checkpoint(small_task(), tmp_path / "evil.ckpt", payload=_Evil(marker))
    with pytest.raises(CheckpointError, match="evil.ckpt: not a readable histoseg checkpoint"):
        load_predictor(path)
    with pytest.raises(CheckpointError, match="would need to run code"):
        small_task(init_checkpoint=str(path))
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the test is not vacuous: an unsafe load runs it
    assert marker.exists()


def test_quantify_loader_checks_the_block_and_the_weights(tmp_path):
    from histoseg.errors import CheckpointError
    from histoseg.inference.checkpoint import load_predictor

    task = small_task()
    predictor = load_predictor(save_checkpoint(task, tmp_path / "good.ckpt"))
    assert predictor.classes == list(task.classes) and predictor.mpp == 1.0
    with pytest.raises(CheckpointError, match="bad.ckpt: histoseg block is inconsistent"):
        load_predictor(save_checkpoint(task, tmp_path / "bad.ckpt", classes=["a", "b"]))
    data = torch.load(tmp_path / "good.ckpt", weights_only=True)
    data["state_dict"].pop(next(iter(data["state_dict"])))
    torch.save(data, tmp_path / "short.ckpt")
    with pytest.raises(CheckpointError, match="short.ckpt: weights do not fit the network"):
        load_predictor(tmp_path / "short.ckpt")


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
