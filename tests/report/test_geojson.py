"""Label map -> GeoJSON: exact round trip, QuPath properties, level-0 scaling, bounded level."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from histoseg.io.tiff import write_pyramid_tiff
from histoseg.report.areas import class_colors, label_colormap
from histoseg.report.geojson import label_map_to_geojson, labels_tif_to_geojson, trace_regions, write_geojson

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]


def rasterise(
    collection: dict, shape_hw: tuple[int, int], scale: tuple[float, float] = (1.0, 1.0)
) -> np.ndarray:
    """Class of every pixel centre (0 where no feature), checking features never overlap."""
    out = np.zeros(shape_hw, np.uint8)
    yy, xx = np.mgrid[: shape_hw[0], : shape_hw[1]] + 0.5
    for feature in collection["features"]:
        geom = shape(feature["geometry"])
        assert geom.is_valid
        inside = shapely.contains_xy(geom, xx * scale[0], yy * scale[1])
        assert not out[inside].any(), "features overlap"
        out[inside] = CLASSES.index(feature["properties"]["classification"]["name"])
    return out


def test_square_known_coordinates() -> None:
    labels = np.zeros((4, 5), np.uint8)
    labels[1:3, 2:4] = 2
    fc = label_map_to_geojson(labels, CLASSES, scale=10.0, offset=(1.0, 2.0))
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1
    feature = fc["features"][0]
    assert feature["geometry"] == {
        "type": "Polygon",
        "coordinates": [[[21.0, 12.0], [41.0, 12.0], [41.0, 32.0], [21.0, 32.0], [21.0, 12.0]]],
    }
    assert feature["properties"]["objectType"] == "annotation"
    assert feature["properties"]["classification"] == {
        "name": "tubules",
        "color": class_colors(CLASSES)[2].tolist(),
    }


def test_ring_with_hole_and_island() -> None:
    labels = np.zeros((9, 9), np.uint8)
    labels[1:8, 1:8] = 1
    labels[3:6, 3:6] = 0
    labels[4, 4] = 1  # island inside the hole: its own region
    regions = trace_regions(labels == 1)
    assert len(regions) == 2
    (shell, holes), (island, island_holes) = sorted(regions, key=lambda r: -len(r[1]))
    assert len(holes) == 1 and island_holes == []
    assert shapely.Polygon(shell, holes).area == 49 - 9
    assert shapely.Polygon(island).area == 1
    assert shapely.Polygon(shell).exterior.is_ccw and not shapely.Polygon(holes[0]).exterior.is_ccw
    fc = label_map_to_geojson(labels, CLASSES)
    np.testing.assert_array_equal(rasterise(fc, labels.shape), labels)


@pytest.mark.parametrize("seed", range(6))
def test_round_trip_exact_on_random_maps(seed: int) -> None:
    """Salt-and-pepper maps have every diagonal-contact configuration; blobs have holes and islands."""
    rng = np.random.default_rng(seed)
    if seed < 3:
        labels = rng.integers(0, 5, size=(23, 31)).astype(np.uint8)
    else:
        from scipy import ndimage

        noise = ndimage.gaussian_filter(rng.random((60, 80)), 2)
        labels = np.digitize(noise, np.quantile(noise, [0.2, 0.4, 0.6, 0.8])).astype(np.uint8)
    labels[0, :3] = 255  # unlabelled: never exported
    fc = label_map_to_geojson(labels, CLASSES)
    expected = np.where(labels == 255, 0, labels)
    np.testing.assert_array_equal(rasterise(fc, labels.shape), expected)
    assert all(f["properties"]["classification"]["name"] != "background" for f in fc["features"])
    for feature in fc["features"]:
        geom = shape(feature["geometry"])
        assert geom.geom_type == "Polygon" and geom.exterior.is_ccw


def test_diagonal_contacts_are_separate_regions() -> None:
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.uint8)
    fc = label_map_to_geojson(labels, CLASSES)
    assert len(fc["features"]) == 5  # 4-connectivity: five single pixels
    ring = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 1]], np.uint8)  # pinched ring
    fc = label_map_to_geojson(ring, CLASSES)
    np.testing.assert_array_equal(rasterise(fc, ring.shape), ring)


def test_simplified_polygons_stay_close() -> None:
    from scipy import ndimage

    noise = ndimage.gaussian_filter(np.random.default_rng(1).random((200, 240)), 4)
    labels = np.digitize(noise, np.quantile(noise, [0.25, 0.5, 0.75])).astype(np.uint8)
    exact = label_map_to_geojson(labels, CLASSES)
    simple = label_map_to_geojson(labels, CLASSES, simplify=0.5)
    count = lambda fc: sum(len(r) for f in fc["features"] for r in f["geometry"]["coordinates"])  # noqa: E731
    # 0.5 px removes the staircase vertices that lie within half a pixel of a straight edge
    # (about 19 % here) and moves no pixel centre across an edge.
    assert count(simple) < 0.85 * count(exact)
    agree = (rasterise(simple, labels.shape) == labels).mean()
    assert agree > 0.99


def test_tiff_to_geojson_in_level0_slide_pixels(tmp_path: Path) -> None:
    """Label map at 2 um/px of a 0.5 um/px slide, polygonised at level 1: 8 slide px per level px."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(np.random.default_rng(2).random((300, 260)), 3)
    labels = np.digitize(noise, np.quantile(noise, [0.3, 0.5, 0.7, 0.9])).astype(np.uint8)
    path = tmp_path / "s.labels.tif"
    write_pyramid_tiff(path, labels, 2.0, min_level_size=100, colormap=label_colormap(CLASSES))
    fc, info = labels_tif_to_geojson(
        path, CLASSES, slide_mpp=0.5, label_mpp=2.0, max_pixels=150 * 130, simplify=0.0
    )
    assert info["level_shape"] == [150, 130] and info["scale"] == [8.0, 8.0]
    level = labels[::2, ::2]
    np.testing.assert_array_equal(
        rasterise(fc, level.shape, scale=(8.0, 8.0)), np.where(level == 0, 0, level)
    )
    out = write_geojson(tmp_path / "s.geojson", fc)
    assert json.loads(out.read_text()) == fc
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.geojson", "s.labels.tif"]
    # the exact level 0 when it fits
    fc0, info0 = labels_tif_to_geojson(path, CLASSES, slide_mpp=0.5, label_mpp=2.0, simplify=0.0)
    assert info0["level_shape"] == [300, 260] and info0["scale"] == [4.0, 4.0]
    np.testing.assert_array_equal(
        rasterise(fc0, labels.shape, scale=(4.0, 4.0)), np.where(labels == 0, 0, labels)
    )
