"""run_quantify end to end on synthetic pyramidal TIFFs: outputs, failures, resume, shards, real slides."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from histoseg.errors import HistosegError
from histoseg.inference.predictor import Predictor
from histoseg.io.tiff import write_pyramid_tiff
from histoseg.quantify import collect_slides, run_quantify, slide_stems
from histoseg.report.areas import label_map_counts

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]


class CountingConv(nn.Module):
    """A tiny random 3x3 conv (seeded) that counts the tiles it sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += x.shape[0]
        return self.conv(x * 4.0 - 2.0) * 4.0


def tiny_predictor(mpp: float = 2.0, sha: str = "0" * 64) -> Predictor:
    return Predictor(
        CountingConv(), list(CLASSES), mpp=mpp, tile_size=64, margin=8, size_multiple=1, checkpoint_sha256=sha
    )


def make_slide(path: Path, height: int = 997, width: int = 1203, mpp: float = 0.5, seed: int = 0) -> Path:
    """Glass with a textured pink/purple tissue ellipse, written as a 2-level JPEG pyramid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    tissue = ((yy - height / 2) / (height * 0.35)) ** 2 + ((xx - width * 0.45) / (width * 0.3)) ** 2 <= 1
    rgb = np.full((height, width, 3), 238, np.uint8)
    texture = rng.integers(0, 60, size=(height, width), dtype=np.uint8)
    rgb[tissue] = np.stack([200 - texture, 110 - texture // 2, 170 - texture // 3], -1)[tissue]
    write_pyramid_tiff(path, rgb, mpp, min_level_size=512)
    return path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("cohort")
    slides = root / "slides"
    slides.mkdir()
    make_slide(slides / "kidney A.tif", seed=0)
    make_slide(slides / "b.tif", height=600, width=700, seed=1)
    out = root / "out"
    predictor = tiny_predictor()
    status = run_quantify(predictor, str(slides), out, progress=False)
    return {"root": root, "slides": slides, "out": out, "status": status, "predictor": predictor}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_outputs_written(cohort: dict) -> None:
    out: Path = cohort["out"]
    assert cohort["status"] == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            ".b.result.json",
            ".kidney_A.result.json",
            "b.geojson",
            "b.labels.tif",
            "b.overlay.png",
            "cohort.png",
            "kidney_A.geojson",
            "kidney_A.labels.tif",
            "kidney_A.overlay.png",
            "index.html",
            "report.csv",
            "report.json",
        ]
    )
    for png in out.glob("*.png"):
        with Image.open(png) as image:
            assert image.size[0] > 300
    collection = json.loads((out / "kidney_A.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and collection["features"]
    props = collection["features"][0]["properties"]
    assert props["objectType"] == "annotation" and props["classification"]["name"] in CLASSES[1:]
    xs = [pt[0] for f in collection["features"] for ring in f["geometry"]["coordinates"] for pt in ring]
    assert 0 <= min(xs) and max(xs) <= 1203 + 4  # level-0 slide pixels (4 per label pixel)


def test_label_tiff_opens_in_openslide_with_physical_size(cohort: dict) -> None:
    import openslide

    for name, (w0, h0) in (("kidney_A", (1203, 997)), ("b", (700, 600))):
        with openslide.OpenSlide(str(cohort["out"] / f"{name}.labels.tif")) as osr:
            mpp = float(osr.properties["openslide.mpp-x"])
            assert mpp == pytest.approx(2.0)
            assert osr.level_count >= 1
            for level in range(osr.level_count):
                region = osr.read_region((0, 0), level, osr.level_dimensions[level])
                assert region.size == osr.level_dimensions[level]
            width, height = osr.dimensions
            # physical size equals the slide's up to the rounding of the grid (half a label pixel)
            assert abs(width * mpp - w0 * 0.5) <= mpp / 2 and abs(height * mpp - h0 * 0.5) <= mpp / 2


def test_report_numbers(cohort: dict) -> None:
    out: Path = cohort["out"]
    rows = read_csv(out / "report.csv")
    assert [r["slide"] for r in rows] == ["b.tif"] * 5 + ["kidney A.tif"] * 5
    for required in (
        "slide",
        "class",
        "pixels",
        "area_um2",
        "area_mm2",
        "fraction_of_tissue",
        "interstitial_fraction",
        "expected_area_um2",
        "mpp",
        "mpp_source",
        "checkpoint_sha256",
        "histoseg_version",
        "status",
        "error",
    ):
        assert required in rows[0]
    for stem, slide in (("b", "b.tif"), ("kidney_A", "kidney A.tif")):
        mine = [r for r in rows if r["slide"] == slide]
        counts = label_map_counts(out / f"{stem}.labels.tif")
        # streamed counts == counts of the written label map
        assert [int(r["pixels"]) for r in mine] == counts[:5].tolist()
        for r in mine:
            assert float(r["area_um2"]) == pytest.approx(int(r["pixels"]) * 4.0)
            assert float(r["mpp"]) == 0.5 and r["mpp_source"] == "tiff-resolution"
            assert r["status"] == "ok" and r["error"] == ""
        tissue = counts[1:5].sum()
        assert float(mine[2]["fraction_of_tissue"]) == pytest.approx(counts[2] / tissue)
        expected_if = counts[1] / (counts[1] + counts[2] + counts[3])
        assert all(float(r["interstitial_fraction"]) == pytest.approx(expected_if) for r in mine)
        assert sum(float(r["expected_area_um2"]) for r in mine) == pytest.approx(counts.sum() * 4.0, rel=1e-6)
    report = json.loads((out / "report.json").read_text())
    assert (
        "A_interstitium / (A_interstitium + A_tubules + A_glomeruli)"
        in report["interstitial_fraction_definition"]
    )
    assert len(report["slides"]) == 2 and len(report["rows"]) == 10


def test_rerun_skips_complete_slides(cohort: dict) -> None:
    out: Path = cohort["out"]
    predictor: Predictor = cohort["predictor"]
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.labels.tif")}
    predictor.model.calls = 0  # type: ignore[union-attr]
    assert run_quantify(predictor, str(cohort["slides"]), out, progress=False) == 0
    assert predictor.model.calls == 0  # type: ignore[union-attr]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.labels.tif")} == before
    # a removed output, or another checkpoint, makes the slide run again
    (out / "b.geojson").unlink()
    assert run_quantify(predictor, str(cohort["slides"]), out, progress=False) == 0
    assert predictor.model.calls > 0  # type: ignore[union-attr]
    assert (out / "b.geojson").is_file()
    assert (out / "kidney_A.labels.tif").stat().st_mtime_ns == before["kidney_A.labels.tif"]


def test_failures_are_reported_and_others_processed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slides = tmp_path / "slides"
    slides.mkdir()
    good = make_slide(slides / "good.tif", height=400, width=500)
    data = good.read_bytes()
    (slides / "truncated.tif").write_bytes(data[: len(data) // 3])
    (slides / "notes.txt").write_text("not a slide")
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(slides / "nompp.png")
    out = tmp_path / "out"
    status = run_quantify(tiny_predictor(), str(slides), out, progress=False)
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert all(line.startswith("error: ") for line in err)
    assert {line.split(": ")[1] for line in err} == {
        str(slides / n) for n in ("truncated.tif", "notes.txt", "nompp.png")
    }
    rows = {r["slide"]: r for r in read_csv(out / "report.csv")}
    assert rows["good.tif"]["status"] == "ok"
    for name, reason in (
        ("notes.txt", "not a slide format"),
        ("nompp.png", "resolution"),
        ("truncated.tif", ""),
    ):
        assert rows[name]["status"] == "failed"
        assert reason in rows[name]["error"] and rows[name]["error"]
    # nothing partial: only the good slide's outputs, reports and result files; no temporary files
    names = sorted(p.name for p in out.iterdir())
    assert [n for n in names if not n.startswith(".")] == [
        "cohort.png",
        "good.geojson",
        "good.labels.tif",
        "good.overlay.png",
        "index.html",
        "report.csv",
        "report.json",
    ]
    assert all(n.endswith(".result.json") for n in names if n.startswith("."))


def test_unwritable_output_folder_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HistosegError, match="out"):
        run_quantify(tiny_predictor(), str(tmp_path), blocker / "out", progress=False)


def test_ranks_merge(tmp_path: Path) -> None:
    slides = tmp_path / "slides"
    slides.mkdir()
    for i in range(3):
        make_slide(slides / f"s{i}.tif", height=300, width=360, seed=i)
    out = tmp_path / "out"
    predictor = tiny_predictor()
    assert run_quantify(predictor, str(slides), out, progress=False, rank=1, world_size=2) == 0
    assert not (out / "report.csv").exists()
    assert sorted(p.name for p in out.glob("*.labels.tif")) == ["s1.labels.tif"]
    assert (
        run_quantify(predictor, str(slides), out, progress=False, rank=0, world_size=2, wait_timeout=5) == 0
    )
    rows = read_csv(out / "report.csv")
    assert sorted({r["slide"] for r in rows}) == ["s0.tif", "s1.tif", "s2.tif"]


def test_collect_and_stems(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "x.svs").write_bytes(b"1")
    (tmp_path / "a" / "x.tif").write_bytes(b"1")
    (tmp_path / "a" / "x.labels.tif").write_bytes(
        b"1"
    )  # our own output in OUT (claimed by its result file): left out
    (tmp_path / "a" / ".x.result.json").write_text("{}")
    paths = collect_slides([str(tmp_path / "a"), str(tmp_path / "b" / "x.svs")], tmp_path / "a")
    assert [p.name for p in paths] == ["x.svs", "x.tif", "x.svs"]
    stems = slide_stems(paths)
    assert len(set(stems)) == 3 and all("/" not in s and not s.startswith(".") for s in stems)
    assert slide_stems([Path("../../etc/passwd")]) == ["passwd"]


@pytest.mark.skipif(
    not (SHARED / "cmu1-small-region").is_dir(), reason="../shared/data/cmu1-small-region absent"
)
def test_real_slides_cmu1(tmp_path: Path) -> None:
    folder = SHARED / "cmu1-small-region"
    files = [folder / "CMU-1-Small-Region.svs", folder / "CMU-1-Small-Region_pyramid.tiff"]
    out = tmp_path / "out"
    status = run_quantify(tiny_predictor(mpp=4.0), [str(f) for f in files], out, progress=False)
    assert status == 0
    rows = read_csv(out / "report.csv")
    by_slide = {r["slide"]: r for r in rows}
    assert set(by_slide) == {f.name for f in files}
    assert by_slide["CMU-1-Small-Region.svs"]["mpp_source"] == "metadata"
    assert by_slide["CMU-1-Small-Region_pyramid.tiff"]["mpp_source"] == "tiff-resolution"
    for r in rows:
        assert float(r["mpp"]) == pytest.approx(0.499)
        assert float(r["label_mpp"]) == 4.0
    # 2220 x 2967 px at 0.499 um/px -> label map round(2220 * 0.499 / 4) x round(2967 * 0.499 / 4)
    pixels = sum(int(r["pixels"]) for r in rows if r["slide"] == "CMU-1-Small-Region.svs")
    assert pixels == round(2220 * 0.499 / 4) * round(2967 * 0.499 / 4)
    total_area = sum(float(r["area_mm2"]) for r in rows if r["slide"] == "CMU-1-Small-Region.svs")
    assert total_area == pytest.approx(2220 * 2967 * 0.499**2 / 1e6, rel=0.01)
    assert not math.isnan(float(rows[0]["interstitial_fraction"]))
    shutil.rmtree(out)


def test_run_quantify_checks_the_mpp_override_against_the_model_before_writing(tmp_path):
    """The API route gets the same one --mpp check as the command line: far coarser than the model is refused."""
    predictor = Predictor(nn.Conv2d(3, 2, 1), ["background", "tissue"], mpp=2.0)
    with pytest.raises(HistosegError, match="--mpp 50: .*upsampled 25x"):
        run_quantify(predictor, tmp_path / "none.tif", tmp_path / "out", mpp=50.0, progress=False)
    assert not (tmp_path / "out").exists()
