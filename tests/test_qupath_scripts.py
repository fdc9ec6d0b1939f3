"""The QuPath scripts of scripts/qupath/ (named in docs/labels.md) write what histoseg reads.

Groovy cannot run here: the tests read the scripts' settings and compare them with histoseg's
(class names and values, the unlabelled value, level-0 resolution, the grid spacing of
configs/kidney_grid.yaml).
"""

from __future__ import annotations

import re

import yaml

import histoseg
from tests.conftest import ROOT

SCRIPTS = ROOT / "scripts" / "qupath"


def test_dense_mask_export_writes_histosegs_class_values():
    text = (SCRIPTS / "export_dense_masks.groovy").read_text(encoding="utf-8")
    block = text.split("def LABELS = [", 1)[1].split("]", 1)[0]
    labels = {name: int(value) for name, value in re.findall(r"'(\w+)'\s*:\s*(\d+)", block)}
    assert labels == {name: k for k, name in enumerate(histoseg.KIDNEY_CLASSES)}
    assert int(re.search(r"int UNLABELLED = (\d+)", text).group(1)) == histoseg.IGNORE_INDEX == 255
    assert float(re.search(r"double DOWNSAMPLE = ([\d.]+)", text).group(1)) == 1.0  # masks are level-0
    assert ".backgroundLabel(UNLABELLED" in text and ".multichannelOutput(false)" in text
    assert "builder.addLabel(className, value)" in text and "writeImage(server, path)" in text


def test_grid_points_use_histosegs_classes_and_the_grid_configs_spacing():
    text = (SCRIPTS / "grid_points.groovy").read_text(encoding="utf-8")
    classes = re.findall(r"'(\w+)'", text.split("def CLASSES = [", 1)[1].split("]", 1)[0])
    assert tuple(classes) == histoseg.KIDNEY_CLASSES
    spacing = float(re.search(r"double SPACING_UM = ([\d.]+)", text).group(1))
    grid = yaml.safe_load((ROOT / "configs" / "kidney_grid.yaml").read_text())
    assert spacing == grid["data"]["init_args"]["synthetic"]["grid_spacing_um"] == 20.0
    assert "ROIs.createPointsROI" in text and "getAveragedPixelSizeMicrons" in text


def test_the_docs_name_the_scripts():
    labels = (ROOT / "docs" / "labels.md").read_text(encoding="utf-8")
    for script in ("export_dense_masks.groovy", "grid_points.groovy"):
        assert f"(../scripts/qupath/{script})" in labels and (SCRIPTS / script).is_file()
