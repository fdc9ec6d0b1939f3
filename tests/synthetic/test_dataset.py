"""Tests of histoseg.synthetic: seeded synthetic PAS kidney slides with exact labels."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from histoseg import KIDNEY_CLASSES
from histoseg.io.tiff import level_shapes
from histoseg.synthetic import (
    KIDNEY_COLORS,
    TissueParams,
    generate_dataset,
    generate_slide,
    render_slide,
)

SMALL = {"width": 1024, "height": 768, "mpp": 0.5}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("synthetic")
    slides = generate_dataset(root, n_slides=3, seed=7, **SMALL)
    return root, slides


@pytest.fixture(scope="module")
def default_slide():  # noqa: ANN201
    """One slide with every default parameter (3072 x 2304 at 0.5 um/px)."""
    return render_slide(seed=0)


def _read_labels(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return tif.pages[0].asarray()


def test_same_seed_same_label_bytes_and_different_seed_differs(tmp_path: Path) -> None:
    a = generate_slide(tmp_path / "a", "s", seed=11, width=512, height=384)
    b = generate_slide(tmp_path / "b", "s", seed=11, width=512, height=384)
    c = generate_slide(tmp_path / "c", "s", seed=12, width=512, height=384)
    digest = [hashlib.sha256(s.label_path.read_bytes()).hexdigest() for s in (a, b, c)]
    assert digest[0] == digest[1]
    assert a.image_path.read_bytes() == b.image_path.read_bytes()
    assert a.pixel_counts == b.pixel_counts
    assert digest[0] != digest[2]
    assert not np.array_equal(_read_labels(a.label_path), _read_labels(c.label_path))


def test_manifest_and_table_counts_equal_bincount_of_label_files(dataset: tuple[Path, list]) -> None:
    root, slides = dataset
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["classes"] == list(KIDNEY_CLASSES)
    assert [s["split"] for s in manifest["slides"]] == ["train", "val", "test"]
    with open(root / "slides.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(slides) == 3
    for slide, record, row in zip(slides, manifest["slides"], rows, strict=True):
        labels = _read_labels(slide.label_path)
        assert labels.shape == (SMALL["height"], SMALL["width"])
        counts = np.bincount(labels.ravel(), minlength=256)
        assert counts[len(KIDNEY_CLASSES) :].sum() == 0, "only kidney class indices may occur"
        expected = {name: int(counts[i]) for i, name in enumerate(KIDNEY_CLASSES)}
        assert slide.pixel_counts == expected
        assert record["pixel_counts"] == expected
        assert sum(expected.values()) == SMALL["width"] * SMALL["height"]
        for name in KIDNEY_CLASSES:
            assert slide.areas_um2[name] == expected[name] * SMALL["mpp"] ** 2
            assert int(row[f"px_{name}"]) == expected[name]
            assert float(row[f"area_um2_{name}"]) == expected[name] * SMALL["mpp"] ** 2
        assert row["slide"] == slide.image_path.name and row["labels"] == slide.label_path.name
        assert (root / row["slide"]).exists() and (root / row["labels"]).exists()
        assert float(row["mpp"]) == SMALL["mpp"] and int(row["width"]) == SMALL["width"]
        assert row["split"] == slide.split


def test_openslide_opens_image_and_labels_with_all_levels_and_mpp(dataset: tuple[Path, list]) -> None:
    _, slides = dataset
    expected_levels = level_shapes(SMALL["height"], SMALL["width"], 512)
    assert len(expected_levels) == 2
    slide = slides[0]
    for path in (slide.image_path, slide.label_path):
        handle = openslide.OpenSlide(str(path))
        try:
            assert handle.level_count == len(expected_levels)
            assert handle.level_dimensions == tuple((w, h) for h, w in expected_levels)
            assert float(handle.properties["openslide.mpp-x"]) == pytest.approx(SMALL["mpp"], rel=1e-6)
            assert float(handle.properties["openslide.mpp-y"]) == pytest.approx(SMALL["mpp"], rel=1e-6)
        finally:
            handle.close()
    # the label map is a palette TIFF: OpenSlide shows the class colours
    labels = _read_labels(slide.label_path)
    handle = openslide.OpenSlide(str(slide.label_path))
    try:
        rgb = np.asarray(handle.read_region((0, 0), 0, (SMALL["width"], SMALL["height"])))[..., :3]
    finally:
        handle.close()
    np.testing.assert_array_equal(rgb, KIDNEY_COLORS[labels])


def test_second_call_reuses_dataset_and_changed_parameters_regenerate(dataset: tuple[Path, list]) -> None:
    root, slides = dataset
    files = sorted(root.iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in files}
    again = generate_dataset(root, n_slides=3, seed=7, **SMALL)
    assert {p.name: p.stat().st_mtime_ns for p in sorted(root.iterdir())} == before
    assert [(s.image_path, s.pixel_counts, s.split) for s in again] == [
        (s.image_path, s.pixel_counts, s.split) for s in slides
    ]


def test_changed_parameters_regenerate_and_remove_stale_slides(tmp_path: Path) -> None:
    first = generate_dataset(tmp_path, n_slides=2, seed=1, width=384, height=256)
    hash1 = json.loads((tmp_path / "manifest.json").read_text())["params_hash"]
    second = generate_dataset(tmp_path, n_slides=1, seed=2, width=384, height=256)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["params_hash"] != hash1
    assert len(second) == 1 and second[0].pixel_counts != first[0].pixel_counts
    assert not first[1].image_path.exists() and not first[1].label_path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json",
        "slides.csv",
        "synthetic_00.labels.tif",
        "synthetic_00.tif",
    ]


def test_default_slide_has_every_class_in_plausible_proportions(default_slide) -> None:  # noqa: ANN001
    counts = np.bincount(default_slide.labels.ravel(), minlength=len(KIDNEY_CLASSES))
    assert len(counts) == len(KIDNEY_CLASSES)
    assert (counts > 0).all(), dict(zip(KIDNEY_CLASSES, counts.tolist(), strict=True))
    tissue = counts[1:].sum()
    assert 0.4 < tissue / counts.sum() < 0.9
    assert counts[2] / tissue > 0.6  # tubules dominate the cortex
    assert 0.05 < counts[1] / tissue < 0.3
    assert 0.005 < counts[3] / tissue < 0.1
    assert default_slide.objects["glomeruli"] >= 1 and default_slide.objects["arteries"] >= 1


def test_labels_are_the_painted_truth(default_slide) -> None:  # noqa: ANN001
    labels, image, inst = default_slide.labels, default_slide.image, default_slide.tubule_instances
    np.testing.assert_array_equal(inst > 0, labels == 2)
    means = {k: image[labels == k].reshape(-1, 3).mean(axis=0) for k in range(5)}
    assert (means[0] > 225).all(), "glass is bright"
    for k in (1, 2, 3, 4):
        assert means[k].mean() < means[0].mean() - 10, f"class {k} is darker than glass"
    r, g, b = means[2]
    assert b > g and r > g, "PAS tubules are lilac/purple (green absorbed most)"
    assert means[3].mean() < means[2].mean(), "glomerular tufts are denser than tubules"


def test_touching_tubules_exist(default_slide) -> None:  # noqa: ANN001
    inst = default_slide.tubule_instances
    pairs: set[tuple[int, int]] = set()
    for dy in range(0, 3):
        for dx in range(-2, 3):
            if (dy, dx) <= (0, 0):
                continue
            a = inst[: inst.shape[0] - dy, max(0, -dx) : inst.shape[1] - max(0, dx)]
            b = inst[dy:, max(0, dx) : inst.shape[1] - max(0, -dx)]
            touch = (a > 0) & (b > 0) & (a != b)
            pairs.update(zip(a[touch].tolist(), b[touch].tolist(), strict=True))
    distinct = {tuple(sorted(p)) for p in pairs}
    assert len(distinct) > 50, f"only {len(distinct)} pairs of distinct tubules within 2 px"
    # but not all tubules touch: some interstitium separates others
    assert default_slide.objects["tubules"] > 200


def test_fibrosis_widens_interstitium_and_shrinks_tubules() -> None:
    healthy = render_slide(seed=3, width=768, height=576)
    fibrotic = render_slide(seed=3, width=768, height=576, tissue=TissueParams(fibrosis=0.8))
    h = np.bincount(healthy.labels.ravel(), minlength=5)
    f = np.bincount(fibrotic.labels.ravel(), minlength=5)
    assert f[1] > 1.5 * h[1]
    assert f[2] < 0.85 * h[2]
    assert f[0] == h[0], "the tissue outline is the same for the same seed"
