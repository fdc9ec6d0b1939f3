import numpy as np
import pytest
from PIL import Image

from histoseg import KIDNEY_CLASSES
from histoseg.errors import ConfigError, LabelError
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


# --- one entry point: slide-table row -> label grid, through the registry of label kinds ---------


def _write_table(folder, rows, header="slide,labels,kind,split"):
    path = folder / "slides.csv"
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def test_registry_maps_a_registered_fake_kind_to_its_grid(tmp_path, monkeypatch):
    """Adding a kind is one builder + one registry line: the table accepts it and the grid is the builder's."""
    from conftest import make_labelled_slide

    from histoseg.datasets import prepare_labelled_slide
    from histoseg.labels import grid
    from histoseg.labels.table import read_slide_table

    slide, _, _ = make_labelled_slide(tmp_path, "s0", seed=0)  # 320 x 256 level-0 px at 0.5 mpp
    (tmp_path / "s0.fake").write_text("unused")
    seen = {}

    def fake_grid(record, open_slide, options):
        seen["call"] = (record.labels.name, open_slide.dimensions, options.mpp, options.brush_um)
        labels = np.full((3, 4), 255, np.uint8)
        labels[1, 2] = 3
        return labels, (8.0, 6.0)

    table = _write_table(tmp_path, [(slide.name, "s0.fake", "fake", "train")])
    with pytest.raises(
        ConfigError, match=r"slides\.csv:2: kind 'fake' must be dense, points, scribbles or none"
    ):
        read_slide_table(table)
    monkeypatch.setitem(grid.LABEL_GRIDS, "fake", fake_grid)
    (record,) = read_slide_table(table)
    assert record.kind == "fake" and grid.label_kinds() == ("dense", "points", "scribbles", "fake")
    made = grid.build_label_grid(record, grid.GridOptions(classes=KIDNEY_CLASSES, mpp=1.0, brush_um=5.0))
    assert seen["call"] == ("s0.fake", (320, 256), 1.0, 5.0)
    assert made.origin == (8.0, 6.0) and made.scale == 2.0 and made.slide_mpp == 0.5
    assert made.labels.tolist() == [[255] * 4, [255, 255, 3, 255], [255] * 4]
    item = prepare_labelled_slide(record, grid.GridOptions(classes=KIDNEY_CLASSES, mpp=1.0))
    assert item.kind == "fake" and item.origin == (8.0, 6.0) and item.counts(5).tolist() == [0, 0, 0, 1, 0]


def test_unknown_label_kind_is_one_line_naming_it_and_the_known_kinds(tmp_path):
    from histoseg.errors import HistosegError
    from histoseg.labels.grid import GridOptions, build_label_grid
    from histoseg.labels.table import SlideRecord

    record = SlideRecord(slide=tmp_path / "a.tif", labels=tmp_path / "a.xyz", kind="polygons")
    with pytest.raises(HistosegError) as info:
        build_label_grid(record, GridOptions(classes=KIDNEY_CLASSES, mpp=1.0))
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f"{tmp_path / 'a.xyz'}: unknown label kind 'polygons'; "
        "use one of dense, points, scribbles in the slide table's kind column"
    )
    with pytest.raises(LabelError, match="no labels for a train slide"):
        build_label_grid(SlideRecord(slide=tmp_path / "a.tif", kind="none"), GridOptions(classes=KIDNEY_CLASSES, mpp=1.0))


def test_a_builder_that_labels_nothing_is_refused(tmp_path, monkeypatch):
    from conftest import make_labelled_slide

    from histoseg.labels import grid
    from histoseg.labels.table import SlideRecord

    slide, labels, _ = make_labelled_slide(tmp_path, "s0", seed=0)
    monkeypatch.setitem(
        grid.LABEL_GRIDS, "blank", lambda r, s, o: (np.full((2, 2), 255, np.uint8), (0.0, 0.0))
    )
    with pytest.raises(LabelError, match=r"no labelled pixel at mpp 2\.0"):
        grid.build_label_grid(SlideRecord(slide, labels, kind="blank"), grid.GridOptions(classes=KIDNEY_CLASSES, mpp=2.0))


def test_each_builtin_kind_is_its_module_builder():
    from histoseg.labels import dense, grid, points, scribbles

    assert grid.LABEL_GRIDS == {
        "dense": dense.dense_grid,
        "points": points.points_grid,
        "scribbles": scribbles.scribbles_grid,
    }


def test_dense_grid_through_the_entry_point_is_the_resampled_mask(tmp_path):
    from conftest import make_labelled_slide

    from histoseg.labels.grid import GridOptions, build_label_grid
    from histoseg.labels.table import SlideRecord

    slide, labels, mask = make_labelled_slide(tmp_path, "s0", seed=3)
    made = build_label_grid(SlideRecord(slide, labels), GridOptions(classes=KIDNEY_CLASSES, mpp=1.0))
    assert made.origin == (0.0, 0.0) and made.scale == 2.0
    assert np.array_equal(made.labels, mask[1::2, 1::2])  # centre of each 2 x 2 footprint


def test_points_grid_covers_the_points_plus_margin(tmp_path):
    from conftest import make_labelled_slide

    from histoseg.labels.grid import GridOptions, build_label_grid
    from histoseg.labels.table import SlideRecord

    slide, _, _ = make_labelled_slide(tmp_path, "s0", seed=0)
    points = tmp_path / "p.csv"
    points.write_text("x,y,class\n41,21,tubules\n61.5,30,glomeruli\n")
    options = GridOptions(classes=KIDNEY_CLASSES, mpp=1.0, margin_px=2)  # 2 level-0 px per grid px
    made = build_label_grid(SlideRecord(slide, points, kind="points"), options)
    # x from 41 - 2 * 2 = 37 (snapped to 36) to 61.5 + 3 * 2 = 67.5: ceil(31.5 / 2) = 16 columns;
    # y from 21 - 4 = 17 (snapped to 16) to 30 + 6 = 36: 10 rows. Points at (2.5, 2.5) and (12.75, 7).
    assert made.origin == (36.0, 16.0) and made.labels.shape == (10, 16)
    assert made.labels[2, 2] == 2 and made.labels[7, 12] == 3 and (made.labels != 255).sum() == 2


# --- one QuPath GeoJSON reader shared by points and scribbles ------------------------------------


def _geojson(path, features):
    import json

    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _point_feature(x, y, name):
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [x, y]},
        "properties": {"classification": {"name": name}},
    }


def test_points_and_scribbles_read_the_same_classes_from_one_file(tmp_path):
    from histoseg.labels.points import read_points
    from histoseg.labels.scribbles import read_scribbles_geojson

    names = ["Tubules", "interstitium", "2", "GLOMERULI", "other"]
    xy = [(3.5, 4.5), (10.5, 2.5), (6.5, 9.5), (15.5, 12.5), (1.5, 14.5)]
    path = _geojson(
        tmp_path / "both.geojson", [_point_feature(x, y, n) for (x, y), n in zip(xy, names, strict=True)]
    )
    points = read_points(path, KIDNEY_CLASSES)
    mask, warnings = read_scribbles_geojson(path, KIDNEY_CLASSES, shape=(16, 20), scale=1.0, brush_px=1)
    assert warnings == []
    assert points.label.tolist() == [2, 1, 2, 3, 4]
    assert [int(mask[int(y), int(x)]) for x, y in xy] == points.label.tolist()
    assert (mask != 255).sum() == 5


def test_points_and_scribbles_give_the_same_unknown_class_error(tmp_path):
    from histoseg.labels.points import read_points
    from histoseg.labels.scribbles import read_scribbles_geojson

    features = [_point_feature(1, 1, "tubules"), _point_feature(2, 2, "Tumour"), _point_feature(3, 3, "Cyst")]
    path = _geojson(tmp_path / "bad.geojson", features)
    with pytest.raises(LabelError) as from_points:
        read_points(path, KIDNEY_CLASSES)
    with pytest.raises(LabelError) as from_scribbles:
        read_scribbles_geojson(path, KIDNEY_CLASSES, shape=(8, 8), scale=1.0, brush_px=1)
    assert (
        str(from_points.value)
        == str(from_scribbles.value)
        == (
            f"{path}: unknown class name(s) 'Tumour' (feature 1), 'Cyst' (feature 2); known classes are "
            "background, interstitium, tubules, glomeruli, other (or their indices 0-4); "
            "rename the classes in the label file or set the model's classes to match"
        )
    )


def test_classify_features_skips_unparsed_and_lists_unclassified(tmp_path):
    from histoseg.labels.annotations import ClassLookup, classify_features

    features = [
        _point_feature(1, 1, "glomeruli"),
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [2, 2]},
            "properties": {"name": "n"},
        },
        {"type": "Feature", "geometry": None, "properties": {"classification": {"name": "Nope"}}},
        _point_feature(4, 4, "1"),
    ]
    parsed, unclassified = classify_features(
        tmp_path / "f.geojson",
        features,
        ClassLookup(KIDNEY_CLASSES),
        lambda feature, where: feature["geometry"],  # None geometry: not this reader's, skipped first
    )
    assert [(c.class_index, c.where) for c in parsed] == [(3, "feature 0"), (1, "feature 3")]
    assert parsed[0].geometry == {"type": "Point", "coordinates": [1, 1]}
    assert unclassified == ["feature 1 ('n')"]
