"""labels/dense.py: value maps, mask checks and exact nearest resampling of dense label masks."""

import numpy as np
import pytest
from PIL import Image

from histoseg import KIDNEY_CLASSES
from histoseg.errors import LabelError
from histoseg.labels.dense import (
    apply_value_map,
    load_dense_labels,
    read_mask_file,
    resample_labels,
    resolve_value_map,
)

FLASH_VALUE_MAP = {
    0: "interstitium",
    1: "tubules",
    7: "tubules",
    2: "glomeruli",
    3: "glomeruli",
    4: "other",
    5: "other",
    6: "other",
}


def test_resolve_and_apply_value_map():
    vm = resolve_value_map({0: "interstitium", 9: "ignore", 3: 2}, KIDNEY_CLASSES)
    assert vm == {0: 1, 9: 255, 3: 2, 255: 255}
    out = apply_value_map(np.array([[0, 9], [3, 255]], np.uint8), vm, "m.png")
    assert out.tolist() == [[1, 255], [2, 255]]
    with pytest.raises(LabelError, match=r"m\.png: label values \[5\] are not in the value map"):
        apply_value_map(np.array([[0, 5]]), vm, "m.png")
    with pytest.raises(LabelError, match="'cortex'.*not one of the classes"):
        resolve_value_map({0: "cortex"}, KIDNEY_CLASSES)


def test_wrong_size_mask(tmp_path):
    Image.fromarray(np.zeros((50, 60), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(
        LabelError, match=r"m\.png: label mask is 60 x 50 px at offset \(0, 0\) but the slide is 40 x 40"
    ):
        load_dense_labels(tmp_path / "m.png", KIDNEY_CLASSES, image_size=(40, 40))
    with pytest.raises(LabelError, match="offset"):
        load_dense_labels(tmp_path / "m.png", KIDNEY_CLASSES, image_size=(60, 50), offset=(1, 0))


def test_rgb_mask_rejected(tmp_path):
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(LabelError, match="colour"):
        read_mask_file(tmp_path / "rgb.png")


def test_resample_labels_nearest_exact():
    labels = np.arange(16, dtype=np.uint8).reshape(4, 4)
    # 2x coarser: output pixel centre at level-0 (1, 1) -> input (1, 1)
    out = resample_labels(labels, (0, 0), 2.0, (0, 0), (2, 2))
    assert out.tolist() == [[5, 7], [13, 15]]
    # input placed at offset (2, 0): output grid starting at 0 sees 255 left of it
    out = resample_labels(labels, (2, 0), 1.0, (0, 0), (1, 4))
    assert out.tolist() == [[255, 255, 0, 1]]


def test_flash_palette_labels_with_value_map_and_offset(flash):
    raw = read_mask_file(flash / "labels" / "healthy_01-labels.png")
    assert raw.shape == (516, 516)
    manifest = {"px_tubule": 173652, "px_tubule_border": 18175, "px_glomerulus": 3390, "px_glom_tuft": 7077}
    assert (raw == 1).sum() == manifest["px_tubule"] and (raw == 7).sum() == manifest["px_tubule_border"]
    image = np.asarray(Image.open(flash / "images" / "healthy_01.png").convert("RGB"))[62:578, 62:578]
    labels = load_dense_labels(
        flash / "labels" / "healthy_01-labels.png",
        KIDNEY_CLASSES,
        image_size=(640, 640),
        value_map=FLASH_VALUE_MAP,
        offset=(62, 62),
        white_value_map={0: "other"},
        image=image,
    )
    counts = np.bincount(labels.ravel(), minlength=5)
    assert counts[2] == 173652 + 18175
    assert counts[3] == 3390 + 7077
    assert counts[0] == 0
    # value 0 split into interstitium (tissue) and other (white): both non-empty, sum preserved
    zero = raw == 0
    assert (labels[zero] == 1).sum() > 0 and (labels[zero] == 4).sum() > 0
    assert counts[1] + counts[4] == zero.sum() + 12499 + 3077 + 816
    with pytest.raises(LabelError, match="label mask is 516 x 516 px at offset"):
        load_dense_labels(
            flash / "labels" / "healthy_01-labels.png",
            KIDNEY_CLASSES,
            image_size=(516, 516),
            offset=(62, 62),
            value_map=FLASH_VALUE_MAP,
        )
