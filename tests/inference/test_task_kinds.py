"""inference/task_kinds.py: one registry of task kinds; the checkpoint reader and the Predictor look kinds up there."""

from __future__ import annotations

import torch

from histoseg.inference.checkpoint import TASKS, make_predictor
from histoseg.inference.predictor import Predictor
from histoseg.inference.task_kinds import TASK_KINDS, TaskKind, Tiling


def test_a_registered_kind_is_known_to_the_checkpoint_reader_and_the_predictor(monkeypatch):
    """A kind added to TASK_KINDS alone is accepted by make_predictor, tiles as it says, and blends as it says."""
    probe = torch.nn.Conv2d(3, 2, 1)
    kind = TaskKind("probe", "crop", lambda config: probe, lambda net, block, method, size: Tiling(net, 96, 7, 4))
    monkeypatch.setitem(TASK_KINDS, "probe", kind)
    block = {"task": "probe", "classes": ["background", "x"], "mpp": 1.0, "patch_size": 16, "network": {}}
    predictor = make_predictor(probe, block)
    assert (predictor.tile_size, predictor.margin, predictor.size_multiple) == (96, 7, 4)
    assert predictor.default_blend == "crop" and predictor.model is probe
    assert set(TASKS) == {"segmentation", "patch_classification"}
    assert Predictor(probe, ["a", "b"], 1.0, metadata={"task": "segmentation"}).default_blend == "gaussian"
    assert Predictor(probe, ["a", "b"], 1.0, metadata={"task": "patch_classification"}).default_blend == "crop"
