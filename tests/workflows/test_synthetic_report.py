"""The area report computed from the synthetic slides' true label maps equals the generator's known areas."""

import csv

import pytest
import torch

from histoseg import KIDNEY_CLASSES
from histoseg.inference.options import InferenceOptions
from histoseg.inference.predictor import Predictor
from histoseg.quantify import run_quantify
from histoseg.report.areas import class_areas, label_map_counts
from histoseg.synthetic import KIDNEY_COLORS, generate_dataset


class IndexOracle(torch.nn.Module):
    """Reads the class back from a palette label map opened as an image -> one-hot logits.

    The slide reader applies the TIFF's palette (``KIDNEY_COLORS``), so each pixel's RGB is its
    class colour; the oracle maps it to the nearest class colour (exact: the colours are distinct).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        colours = torch.as_tensor(KIDNEY_COLORS[: len(KIDNEY_CLASSES)], dtype=torch.float32)  # (C, 3)
        rgb = (x * 255).round().permute(0, 2, 3, 1)  # (N, H, W, 3)
        index = ((rgb[..., None, :] - colours) ** 2).sum(-1).argmin(-1)  # (N, H, W)
        return torch.nn.functional.one_hot(index, len(KIDNEY_CLASSES)).permute(0, 3, 1, 2).float() * 50


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("syn"), n_slides=2, seed=3, width=1024, height=768)


def test_areas_from_true_label_map_equal_known_areas(slides):
    for slide in slides:
        counts = label_map_counts(slide.label_path)
        rows = {r["class"]: r for r in class_areas(counts, slide.mpp, list(KIDNEY_CLASSES))}
        for name in KIDNEY_CLASSES:
            assert rows[name]["pixels"] == slide.pixel_counts[name]
            assert rows[name]["area_um2"] == pytest.approx(slide.areas_um2[name], rel=1e-12)


CROP = InferenceOptions(blend="crop")


def oracle_predictor(mpp: float) -> Predictor:
    """A predictor whose 'model' returns the label map it is given (tiles are label-map tiles)."""
    return Predictor(
        model=IndexOracle(),
        classes=list(KIDNEY_CLASSES),
        mpp=mpp,
        tile_size=256,
        margin=0,
        size_multiple=1,
        background_class=0,
    )


def test_quantify_of_true_label_map_reproduces_known_areas(slides, tmp_path):
    predictor = oracle_predictor(slides[0].mpp)
    status = run_quantify(predictor, [s.label_path for s in slides], tmp_path, CROP, progress=False)
    assert status == 0
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    for slide in slides:
        name = slide.label_path.name
        got = {r["class"]: r for r in rows if r["slide"] == name}
        for cls in KIDNEY_CLASSES:
            assert int(got[cls]["pixels"]) == slide.pixel_counts[cls], (name, cls)
            assert float(got[cls]["area_um2"]) == pytest.approx(slide.areas_um2[cls], rel=1e-9)
        a = {c: slide.areas_um2[c] for c in ("interstitium", "tubules", "glomeruli")}
        expected = a["interstitium"] / sum(a.values())
        assert float(got["tubules"]["interstitial_fraction"]) == pytest.approx(expected, rel=1e-9)


def test_point_counting_beside_segmentation_fraction(slides, tmp_path):
    """Grid points drawn from the truth: their fractions' intervals cover the exact fractions of tissue."""
    import numpy as np

    from histoseg.labels.dense import read_mask_file
    from histoseg.labels.points import write_points_csv
    from histoseg.labels.simulate import grid_points_from_mask

    points_dir = tmp_path / "points"
    for slide in slides:
        mask = read_mask_file(slide.label_path)
        points = grid_points_from_mask(mask, spacing_px=12)
        write_points_csv(points, points_dir / f"{slide.label_path.stem}.points.csv", list(KIDNEY_CLASSES))
    predictor = oracle_predictor(slides[0].mpp)
    assert (
        run_quantify(
            predictor,
            [s.label_path for s in slides],
            tmp_path / "out",
            CROP,
            progress=False,
            points=points_dir,
        )
        == 0
    )
    rows = [r for r in csv.DictReader(open(tmp_path / "out" / "report.csv")) if r["class"] != "background"]
    assert rows and all(r["point_fraction"] != "" for r in rows)
    covered = [
        float(r["point_ci_low"]) <= float(r["fraction_of_tissue"]) <= float(r["point_ci_high"]) for r in rows
    ]
    assert np.mean(covered) >= 0.75  # 95 % intervals, systematic grid: nearly all cover the truth
    assert sum(int(r["point_count"]) for r in rows) > 1000


def test_quantify_points_ppi_with_a_perfect_model_has_zero_width_at_the_truth(slides, tmp_path):
    """Oracle model + grid points from the truth (glass points included): the prediction-powered
    interstitial fraction equals the exact one, with the guard's 1/n width (no disagreement seen),
    far narrower than the point count's Wilson interval beside it."""
    from histoseg.labels.dense import read_mask_file
    from histoseg.labels.points import write_points_csv
    from histoseg.labels.simulate import grid_points_from_mask

    points_dir = tmp_path / "points"
    slide = slides[0]
    mask = read_mask_file(slide.label_path)
    write_points_csv(
        grid_points_from_mask(mask, spacing_px=20),
        points_dir / f"{slide.label_path.stem}.points.csv",
        list(KIDNEY_CLASSES),
    )
    out = tmp_path / "out"
    predictor = oracle_predictor(slide.mpp)
    assert run_quantify(predictor, [slide.label_path], out, CROP, progress=False, points=points_dir) == 0
    rows = list(csv.DictReader(open(out / "report.csv")))
    a = {c: slide.areas_um2[c] for c in ("interstitium", "tubules", "glomeruli")}
    exact = a["interstitium"] / sum(a.values())
    for row in rows:
        assert float(row["ppi_if"]) == pytest.approx(exact, abs=1e-12)
        low, high = float(row["ppi_if_ci_low"]), float(row["ppi_if_ci_high"])
        assert low < exact < high
        assert high - low < (float(row["point_if_ci_high"]) - float(row["point_if_ci_low"])) / 3
        assert row["ppi_domain"] == "slide"
        assert int(row["ppi_points"]) > 500
        assert float(row["point_if_ci_low"]) < float(row["point_if"]) < float(row["point_if_ci_high"])
    import json

    report = json.loads((out / "report.json").read_text())
    assert "ppi_if" in report["definitions"]
