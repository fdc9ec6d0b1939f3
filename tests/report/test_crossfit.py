"""Cross-fitting manifests: written, recognised by type, and a checkpoint mapped to its fold."""

from __future__ import annotations

import json

import pytest

from histoseg.errors import HistosegError
from histoseg.report.crossfit import (
    fold_of_checkpoint,
    is_manifest,
    manifest_path,
    read_manifest,
    write_manifest,
)


def test_a_checkpoint_is_mapped_to_its_fold_by_the_table_it_trained_on(tmp_path):
    path = manifest_path(tmp_path)
    path.parent.mkdir()
    write_manifest(path, 3, 0, "abc", {"s": {"design_sha256": "d", "held_out": [["p1"], ["p2"], ["p3"]]}})
    manifest = read_manifest(tmp_path)
    assert manifest["folds"] == 3 and manifest["slides"]["s"]["held_out"][1] == ["p2"]
    assert fold_of_checkpoint(tmp_path, manifest, str(tmp_path / "crossfit" / "fold2.slides.csv"), "c") == 2
    with pytest.raises(HistosegError, match="not trained on a fold table"):
        fold_of_checkpoint(tmp_path, manifest, str(tmp_path / "slides.csv"), "c")
    with pytest.raises(HistosegError, match="not trained on a fold table"):
        fold_of_checkpoint(tmp_path, manifest, None, "c")


def test_a_user_file_with_the_marker_as_a_value_is_not_a_manifest(tmp_path):
    path = manifest_path(tmp_path)
    path.parent.mkdir()
    path.write_text(json.dumps({"note": "histoseg cross-fitting folds", "folds": 2}), encoding="utf-8")
    assert not is_manifest(path)
    with pytest.raises(HistosegError, match="run 'histoseg sample --crossfit K"):
        read_manifest(tmp_path)
