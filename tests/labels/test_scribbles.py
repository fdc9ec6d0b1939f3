from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.draw import disk, ellipse

from histoseg import KIDNEY_CLASSES
from histoseg.errors import ConfigError, LabelError
from histoseg.labels.scribbles import (
    read_scribble_image,
    read_scribbles_geojson,
    read_scribbles_geojson_sparse,
    write_scribbles_geojson,
)
from histoseg.labels.simulate import simulate_scribbles
from histoseg.labels.strokes import Stroke, rasterize_strokes

CLASSES = KIDNEY_CLASSES


def _feature(kind, coords, name="tubules"):
    props = {"objectType": "annotation"}
    if name is not None:
        props["classification"] = {"name": name, "color": [0, 0, 255]}
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coords}, "properties": props}


def _write_fc(path: Path, features) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _synthetic_mask(seed: int = 0) -> np.ndarray:
    """Interstitium (1) with round tubules (2), oval glomeruli (3), a glass corner (0), a thin vessel (4)."""
    rng = np.random.default_rng(seed)
    mask = np.full((160, 160), 1, np.uint8)
    for _ in range(25):
        r, c = rng.integers(8, 152, 2)
        rr, cc = disk((r, c), int(rng.integers(5, 12)), shape=mask.shape)
        mask[rr, cc] = 2
    for _ in range(3):
        r, c = rng.integers(20, 140, 2)
        rr, cc = ellipse(r, c, 15, 10, shape=mask.shape)
        mask[rr, cc] = 3
    mask[:15, :15] = 0
    mask[150:, 100:] = 255
    mask[80, 20:140] = 4  # one pixel thick: thinner than the brush
    return mask


# --- rasterising --------------------------------------------------------------------------


# --- GeoJSON ------------------------------------------------------------------------------


def test_read_geojson_lines_polygons_points(tmp_path):
    features = [
        _feature("LineString", [[1.5, 2.5], [5.5, 2.5]], "Tubules"),
        _feature(
            "Polygon",
            [
                [[10, 10], [18, 10], [18, 18], [10, 18], [10, 10]],
                [[12, 12], [16, 12], [16, 16], [12, 16], [12, 12]],
            ],
            "glomeruli",
        ),
        _feature("Point", [30.5, 30.5], "other"),
        _feature("MultiLineString", [[[0.5, 35.5], [3.5, 35.5]], [[0.5, 38.5], [0.5, 38.5]]], "interstitium"),
        _feature(
            "Polygon", [[[20.5, 0.5], [23.5, 0.5], [23.5, 3.5], [20.5, 3.5], [20.5, 0.5]]], "background"
        ),
    ]
    mask, warnings = read_scribbles_geojson(
        _write_fc(tmp_path / "s.geojson", features), CLASSES, shape=(40, 40), scale=1.0, brush_px=3
    )
    assert warnings == []
    assert (mask == 2).sum() == 21  # 7 x 3
    assert (mask == 3).sum() == 64 - 16  # centres 10.5..17.5 minus the hole 12.5..15.5
    assert (mask == 4).sum() == 9
    # A 3-px band over centres x = 0.5 .. 4.5 (5 x 3) and a dot clipped at the left edge (2 x 3).
    assert (mask == 1).sum() == 15 + 6
    assert (mask == 0).sum() == 16  # boundary centres count: 20.5..23.5 inclusive


def test_read_geojson_scale_and_last_wins(tmp_path):
    features = [
        _feature("LineString", [[0.0, 10.0], [40.0, 10.0]], "tubules"),
        _feature("LineString", [[20.0, 0.0], [20.0, 40.0]], "glomeruli"),
    ]
    f = _write_fc(tmp_path / "s.geojson", features)
    mask, _ = read_scribbles_geojson(f, CLASSES, shape=(10, 10), scale=4.0, brush_px=1)
    # Level-0 / 4: the lines run along y = 2.5 and x = 5.0 (between columns 4 and 5: both at distance 0.5).
    assert mask[2, 5] == 3 and mask[2, 4] == 3 and mask[2, 0] == 2
    assert (mask == 2).sum() == 8 and (mask == 3).sum() == 20


def test_read_geojson_warnings_and_errors(tmp_path):
    features = [
        _feature("LineString", [], "tubules"),
        _feature("LineString", [[1, 1], [3, 3]], None),
        {"type": "Feature", "geometry": None, "properties": {"name": "blank"}},
        _feature("LineString", [[1, 1], [3, 3]], "tubules"),
    ]
    mask, warnings = read_scribbles_geojson(
        _write_fc(tmp_path / "w.geojson", features), CLASSES, shape=(8, 8), scale=1.0, brush_px=1
    )
    assert (mask == 2).sum() > 0 and len(warnings) == 2
    assert "2 empty geometries: feature 0, feature 2 ('blank')" in warnings[0]
    assert "unclassified feature(s): feature 1" in warnings[1]
    kw = {"shape": (8, 8), "scale": 1.0, "brush_px": 1}
    with pytest.raises(LabelError) as err:
        read_scribbles_geojson(
            _write_fc(
                tmp_path / "u.geojson", [_feature("LineString", [[1, 1], [2, 2]], n) for n in ("Tumor", "x")]
            ),
            CLASSES,
            **kw,
        )
    assert "'Tumor' (feature 0), 'x' (feature 1)" in str(err.value) and "known classes are background" in str(
        err.value
    )
    (tmp_path / "j.geojson").write_text('{"type": "FeatureCollection", "features": [}')
    with pytest.raises(LabelError, match="invalid JSON"):
        read_scribbles_geojson(tmp_path / "j.geojson", CLASSES, **kw)
    (tmp_path / "g.geojson").write_text(json.dumps({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}))
    with pytest.raises(LabelError, match="not a GeoJSON FeatureCollection"):
        read_scribbles_geojson(tmp_path / "g.geojson", CLASSES, **kw)
    with pytest.raises(LabelError, match=r"vertex at \(9, 3\) outside the slide \(level-0 size 8 x 8"):
        read_scribbles_geojson(
            _write_fc(tmp_path / "o.geojson", [_feature("LineString", [[1, 1], [9, 3]])]),
            CLASSES,
            slide_size=(8, 8),
            **kw,
        )
    with pytest.raises(LabelError, match="not found"):
        read_scribbles_geojson(tmp_path / "missing.geojson", CLASSES, **kw)


@pytest.mark.parametrize("scale", [1.0, 0.37, 4.0, 2.5])
def test_round_trip_write_read_equals_direct_raster(tmp_path, scale):
    mask = _synthetic_mask()
    strokes = simulate_scribbles(mask, fraction=0.05, brush_px=3, seed=2)
    rng = np.random.default_rng(0)
    strokes += [
        Stroke(int(rng.integers(5)), rng.uniform(-2, 162, size=(int(rng.integers(1, 6)), 2)))
        for _ in range(20)
    ]
    path = write_scribbles_geojson(
        strokes, tmp_path / "s.geojson", CLASSES, scale=scale, brush_px=3, colours={"tubules": "#00ff00"}
    )
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == len(strokes)
    first = data["features"][0]
    assert (
        first["geometry"]["type"] == "LineString" and first["properties"]["classification"]["name"] in CLASSES
    )
    back, warnings = read_scribbles_geojson(path, CLASSES, shape=mask.shape, scale=scale, brush_px=3)
    assert warnings == []
    assert np.array_equal(back, rasterize_strokes(strokes, mask.shape, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["s.geojson"]


def test_writer_colours_and_dots(tmp_path):
    path = write_scribbles_geojson(
        [Stroke(2, np.array([[1.5, 1.5]]))],
        tmp_path / "d.geojson",
        CLASSES,
        scale=2.0,
        colours={"Tubules": [1, 2, 3]},
    )
    feature = json.loads(path.read_text())["features"][0]
    assert feature["geometry"]["coordinates"] == [[3.0, 3.0], [3.0, 3.0]]
    assert feature["properties"]["classification"] == {"name": "tubules", "color": [1, 2, 3]}


# --- colour images ------------------------------------------------------------------------


def test_read_scribble_image_rgb_rgba_palette(tmp_path):
    rgb = np.full((6, 8, 3), 255, np.uint8)
    rgb[0, :3] = (255, 0, 0)
    rgb[1, :2] = (0, 0, 250)  # within tolerance 5 of blue
    rgb[2, 0] = (0, 0, 0)  # black: unlabelled
    Image.fromarray(rgb).save(tmp_path / "s.png")
    colours = {"tubules": (255, 0, 0), "glomeruli": "#0000ff"}
    out = read_scribble_image(tmp_path / "s.png", colours, CLASSES, tolerance=5, shape=(6, 8))
    assert (out == 2).sum() == 3 and (out == 3).sum() == 2 and (out == 255).sum() == 48 - 5
    rgba = np.zeros((6, 8, 4), np.uint8)  # transparent everywhere (any rgb): unlabelled
    rgba[..., :3] = 77
    rgba[3, 3] = (255, 0, 0, 255)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = read_scribble_image(tmp_path / "a.png", colours, CLASSES)
    assert out[3, 3] == 2 and (out != 255).sum() == 1
    pal = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    pal.putpalette([255, 255, 255, 255, 0, 0, 0, 0, 255] + [0] * 759)
    pal.save(tmp_path / "p.png")
    assert read_scribble_image(tmp_path / "p.png", colours, CLASSES).tolist() == [[255, 2], [3, 2]]
    # A configured black is a class, not "unlabelled".
    assert (
        read_scribble_image(tmp_path / "s.png", {**colours, "background": (0, 0, 0)}, CLASSES, tolerance=5)[
            2, 0
        ]
        == 0
    )


def test_read_scribble_image_errors(tmp_path):
    rgb = np.full((10, 10, 3), 255, np.uint8)
    rgb[0, :7] = (1, 200, 3)
    rgb[1, :2] = (9, 9, 9)
    Image.fromarray(rgb).save(tmp_path / "s.png")
    with pytest.raises(LabelError) as err:
        read_scribble_image(tmp_path / "s.png", {"tubules": (255, 0, 0)}, CLASSES)
    msg = str(err.value)
    assert "2 colour(s) are not scribble colours ((1, 200, 3) x 7 px, (9, 9, 9) x 2 px)" in msg
    assert "add them to colours" in msg and "\n" not in msg
    with pytest.raises(LabelError, match="must be 9 x 9"):
        read_scribble_image(tmp_path / "s.png", {"tubules": (1, 200, 3)}, CLASSES, tolerance=10, shape=(9, 9))
    with pytest.raises(ConfigError, match="unknown class name"):
        read_scribble_image(tmp_path / "s.png", {"tumour": (1, 200, 3)}, CLASSES)
    with pytest.raises(ConfigError, match="not a colour"):
        read_scribble_image(tmp_path / "s.png", {"tubules": (1, 300, 3)}, CLASSES)
    with pytest.raises(ConfigError, match="reuses the colour"):
        read_scribble_image(tmp_path / "s.png", {"tubules": (1, 2, 3), "other": "#010203"}, CLASSES)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(LabelError, match="cannot read the scribble image"):
        read_scribble_image(tmp_path / "bad.png", {"tubules": (1, 2, 3)}, CLASSES)


# --- simulation ---------------------------------------------------------------------------


# --- growing scribbles to superpixels -------------------------------------------------------


def test_scribble_growth_on_a_slide_follows_the_objects(tmp_path):
    """Grown scribbles on a slide whose colours follow its classes: many more labels, all correct."""
    import csv

    from histoseg.datasets import prepare_labelled_slide
    from histoseg.labels.grid import GridOptions
    from histoseg.labels.table import read_slide_table
    from tests.conftest import make_labelled_slide

    slide, _, truth = make_labelled_slide(tmp_path, "s0", seed=3)
    strokes = simulate_scribbles(truth, fraction=0.03, brush_px=3, seed=0)
    write_scribbles_geojson(strokes, tmp_path / "s0.geojson", CLASSES, brush_px=3)
    with open(tmp_path / "slides.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "labels", "kind", "split"])
        writer.writerow([slide.name, "s0.geojson", "scribbles", "train"])
    record = read_slide_table(tmp_path / "slides.csv")[0]
    strokes_only = prepare_labelled_slide(record, GridOptions(classes=CLASSES, mpp=0.5, brush_um=1.5)).labels
    grown = prepare_labelled_slide(record, GridOptions(classes=CLASSES, mpp=0.5, brush_um=1.5, grow_um=4.0)).labels
    drawn, labelled = strokes_only != 255, grown != 255
    assert np.array_equal(grown[drawn], strokes_only[drawn])  # strokes are never changed
    assert labelled.sum() >= 4 * drawn.sum()
    assert (grown[labelled] == truth[labelled]).mean() >= 0.99


def test_synthetic_datamodule_simulates_contour_scribbles(tmp_path):
    """``scribble_method`` reaches the simulator, and each method gets its own cached table."""
    from histoseg.datamodules import SyntheticKidneyDataModule
    from histoseg.sources import SyntheticSlides

    tables = {}
    for method in ("skeleton", "contour"):
        dm = SyntheticKidneyDataModule(
            synthetic=SyntheticSlides(
                root=str(tmp_path), n_slides=2, width=768, height=512, label_kind="scribbles",
                scribble_method=method,
            )
        )  # fmt: skip
        tables[method] = Path(dm.slide_table())
    assert tables["skeleton"].name == "table-scribbles-val1-frac0.03-brush2um.csv"  # name as before
    assert tables["contour"].name == "table-scribbles-val1-frac0.03-brush2um-contour.csv"
    geometries = {}
    for method, table in tables.items():
        (geojson,) = table.parent.glob(f"*{table.stem.removeprefix('table-')}.scribbles.geojson")
        geometries[method] = [f["geometry"] for f in json.loads(geojson.read_text())["features"]]
    assert geometries["skeleton"] and geometries["contour"]
    assert geometries["skeleton"] != geometries["contour"]


# -- labelled pixels alone (no whole-slide array; labels/store.py) --
SPARSE_CLASSES = ("bg", "int", "tubules", "glom")


def test_sparse_pixels_equal_the_mask_with_the_last_feature_winning(tmp_path):
    path = tmp_path / "s.geojson"
    strokes = [
        (2, np.array([[2.0, 5.0], [30.0, 5.0]])),
        (1, np.array([[10.0, 1.0], [10.0, 20.0]])),  # crosses the first: drawn later, wins
        (3, np.array([[25.0, 18.0]])),  # a dot
        (2, np.array([[10.0, 3.0], [12.0, 3.0]])),  # over the second again
    ]
    write_scribbles_geojson(strokes, path, SPARSE_CLASSES)
    mask, _ = read_scribbles_geojson(path, SPARSE_CLASSES, shape=(24, 36), scale=1.0, brush_px=3)
    flat, values, warnings = read_scribbles_geojson_sparse(
        path, SPARSE_CLASSES, shape=(24, 36), scale=1.0, brush_px=3
    )
    assert warnings == [] and np.all(np.diff(flat) > 0)
    assert np.array_equal(flat, np.flatnonzero(mask != 255)) and np.array_equal(values, mask.ravel()[flat])
    assert mask[5, 10] == 1 and mask[3, 10] == 2 and set(np.unique(values)) == {1, 2, 3}


def test_sparse_pixels_of_a_stroke_on_a_whole_slide_grid_need_no_slide_sized_array(tmp_path):
    """A 200,000 x 150,000 px grid (30 G pixels): the whole-grid mask could not be allocated here."""
    path = tmp_path / "s.geojson"
    write_scribbles_geojson(
        [(1, np.array([[100_000.5, 70_000.5], [100_004.5, 70_000.5]]))], path, SPARSE_CLASSES
    )
    flat, values, _ = read_scribbles_geojson_sparse(
        path, SPARSE_CLASSES, shape=(150_000, 200_000), scale=1.0, brush_px=1
    )
    rows, cols = np.divmod(flat, 200_000)
    assert rows.tolist() == [70_000] * 5 and cols.tolist() == list(range(100_000, 100_005))
    assert values.tolist() == [1] * 5
