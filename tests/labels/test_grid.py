import numpy as np
import pytest

from histoseg import KIDNEY_CLASSES
from histoseg.errors import ConfigError, LabelError

# --- one entry point: slide-table row -> label grid, through the registry of label kinds ---------


def _write_table(folder, rows, header="slide,labels,kind,split"):
    path = folder / "slides.csv"
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def test_registry_maps_a_registered_fake_kind_to_its_grid(tmp_path, monkeypatch):
    """Adding a kind is one builder + one registry line: the table accepts it and the grid is the builder's."""
    from histoseg.datasets import prepare_labelled_slide
    from histoseg.labels import grid
    from histoseg.labels.table import read_slide_table
    from tests.conftest import make_labelled_slide

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
    from histoseg.labels import grid
    from histoseg.labels.table import SlideRecord
    from tests.conftest import make_labelled_slide

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
    from histoseg.labels.grid import GridOptions, build_label_grid
    from histoseg.labels.table import SlideRecord
    from tests.conftest import make_labelled_slide

    slide, labels, mask = make_labelled_slide(tmp_path, "s0", seed=3)
    made = build_label_grid(SlideRecord(slide, labels), GridOptions(classes=KIDNEY_CLASSES, mpp=1.0))
    assert made.origin == (0.0, 0.0) and made.scale == 2.0
    assert np.array_equal(made.labels, mask[1::2, 1::2])  # centre of each 2 x 2 footprint


def test_points_grid_covers_the_points_plus_margin(tmp_path):
    from histoseg.labels.grid import GridOptions, build_label_grid
    from histoseg.labels.table import SlideRecord
    from tests.conftest import make_labelled_slide

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
