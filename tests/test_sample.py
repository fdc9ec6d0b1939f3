"""``histoseg sample`` end to end: place points, classify them as QuPath would, ``quantify --points``.

Known answers: the simulated pathologist classifies each point with the tiny slide's true label
under it, so the point-count fraction in the report is the count the test makes itself.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histoseg.sampling.design import is_design_file, read_design
from tests.conftest import cli_exit_code

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]


def classify_geojson(path: Path, truth: np.ndarray, *, out: Path | None = None) -> list[int]:
    """Classify every point of a points GeoJSON with the true class under it, as a QuPath export would."""
    data = json.loads(path.read_text(encoding="utf-8"))
    labels = []
    for feature in data["features"]:
        x, y = feature["geometry"]["coordinates"]
        value = int(truth[min(int(y), truth.shape[0] - 1), min(int(x), truth.shape[1] - 1)])
        feature["properties"]["classification"] = {"name": CLASSES[value], "color": [200, 0, 0]}
        feature["properties"].pop("isLocked", None)
        labels.append(value)
    (out or path).write_text(json.dumps(data), encoding="utf-8")
    return labels


def read_points_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def sampled(tiny_slide_checkpoint, tmp_path):
    folder, ckpt = tiny_slide_checkpoint
    slides = tmp_path / "slides"
    slides.mkdir()
    shutil.copy(folder / "good.tif", slides / "good.tif")
    truth = np.asarray(Image.open(folder / "good.png"))
    points = tmp_path / "points"
    args = ["sample", "--ckpt_path", ckpt, "--slides", slides / "good.tif", "--out", points]
    assert cli_exit_code([*args, "--n", "40", "--design", "grid", "--seed", "1"]) == 0
    return ckpt, slides, points, truth, args


def test_sample_writes_named_unclassified_points_and_the_design(sampled):
    _, _, points, _, _ = sampled
    geo = json.loads((points / "good.points.geojson").read_text(encoding="utf-8"))
    rows = read_points_csv(points / "good.points.csv")
    names = [f["properties"]["name"] for f in geo["features"]]
    assert names == [f"p{k:04d}" for k in range(1, len(names) + 1)] == [r["id"] for r in rows]
    assert all("classification" not in f["properties"] and f["geometry"]["type"] == "Point" for f in geo["features"])
    assert all(r["class"] == "" for r in rows)
    assert is_design_file(points / "good.design.json")
    design = read_design(points / "good.design.json")
    assert design.kind == "grid" and design.ids == names and 25 <= len(names) <= 45
    xy = np.array([f["geometry"]["coordinates"] for f in geo["features"]])
    np.testing.assert_allclose(xy, np.stack([design.x, design.y], 1))
    np.testing.assert_allclose(xy, np.array([[float(r["x"]), float(r["y"])] for r in rows]))


def test_classified_points_give_the_counted_fraction_and_a_headline(sampled, tmp_path):
    ckpt, slides, points, truth, _ = sampled
    labels = np.array(classify_geojson(points / "good.points.geojson", truth))
    out = tmp_path / "results"
    args = ["quantify", "--ckpt_path", ckpt, "--slides", slides / "good.tif", "--out", out, "--points", points]
    assert cli_exit_code([*args, "--no_progress"]) == 0
    row = read_points_csv(out / "report.csv")[0]
    interstitium, compartments = np.sum(labels == 1), np.isin(labels, [1, 2, 3]).sum()
    assert float(row["point_if"]) == pytest.approx(interstitium / compartments)
    assert row["if_design"] == "grid" and int(row["if_points"]) == len(labels)
    assert float(row["if_ci_low"]) <= float(row["if_estimate"]) <= float(row["if_ci_high"])
    assert int(row["if_points_needed"]) >= len(labels)
    result = json.loads((out / ".good.result.json").read_text(encoding="utf-8"))["point_counting"]
    assert {"point counting", "PPI", "post-stratified"} <= set(result["estimators"])
    assert result["points_used"] == len(labels) and result["points_pending"] == 0

    # Editing a point's class re-runs the slide (the points are in the resume key): the report follows.
    data = json.loads((points / "good.points.geojson").read_text(encoding="utf-8"))
    first = data["features"][0]["properties"]
    was_interstitium = first["classification"]["name"] == "interstitium"
    first["classification"]["name"] = "tubules" if was_interstitium else "interstitium"
    (points / "good.points.geojson").write_text(json.dumps(data), encoding="utf-8")
    assert cli_exit_code([*args, "--no_progress"]) == 0
    again = read_points_csv(out / "report.csv")[0]
    shift = -1 if was_interstitium else 1
    compartments_after = compartments + (0 if labels[0] in (1, 2, 3) else 1)
    assert float(again["point_if"]) == pytest.approx((interstitium + shift) / compartments_after)


def test_a_second_round_repeats_no_point_and_waits_until_classified(sampled, tmp_path):
    ckpt, slides, points, truth, args = sampled
    first = read_points_csv(points / "good.points.csv")
    classify_geojson(points / "good.points.geojson", truth)
    assert cli_exit_code([*args, "--n", "40", "--design", "grid", "--seed", "2"]) == 0
    second = read_points_csv(points / "good.points.round2.csv")
    assert second and {r["id"] for r in first}.isdisjoint(r["id"] for r in second)
    old = {(round(float(r["x"]), 3), round(float(r["y"]), 3)) for r in first}
    assert old.isdisjoint((round(float(r["x"]), 3), round(float(r["y"]), 3)) for r in second)
    design = read_design(points / "good.design.json")
    assert design.last_round == 2 and len(design.ids) == len(first) + len(second)

    out = tmp_path / "results"
    args_q = ["quantify", "--ckpt_path", ckpt, "--slides", slides / "good.tif", "--out", out, "--points", points]
    assert cli_exit_code([*args_q, "--no_progress"]) == 0
    result = json.loads((out / ".good.result.json").read_text(encoding="utf-8"))["point_counting"]
    assert result["points_used"] == len(first) and result["points_pending"] == len(second)
    classify_geojson(points / "good.points.round2.geojson", truth)
    assert cli_exit_code([*args_q, "--no_progress"]) == 0
    result = json.loads((out / ".good.result.json").read_text(encoding="utf-8"))["point_counting"]
    assert result["points_used"] == len(first) + len(second) and result["rounds"] == 2


def test_a_points_file_histoseg_did_not_write_is_never_overwritten(tiny_slide_checkpoint, tmp_path, capsys):
    folder, ckpt = tiny_slide_checkpoint
    points = tmp_path / "points"
    points.mkdir()
    mine = points / "good.points.csv"
    mine.write_text("id,x,y,class\na,1,1,tubules\n", encoding="utf-8")
    code = cli_exit_code(["sample", "--ckpt_path", ckpt, "--slides", folder / "good.tif", "--out", points])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {mine}")
    assert mine.read_text(encoding="utf-8") == "id,x,y,class\na,1,1,tubules\n"
    assert sorted(p.name for p in points.iterdir()) == ["good.points.csv"]


@pytest.mark.parametrize(
    "extra, option",
    [(["--n", "0"], "--n"), (["--design", "hexagonal"], "--design"), (["--margin_um", "-1"], "--margin_um")],
)
def test_bad_options_stop_before_anything_is_written(tiny_slide_checkpoint, tmp_path, capsys, extra, option):
    folder, ckpt = tiny_slide_checkpoint
    points = tmp_path / "points"
    code = cli_exit_code(["sample", "--ckpt_path", ckpt, "--slides", folder / "good.tif", "--out", points, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and option in err[0]
    assert not points.exists() or not any(points.iterdir())


def documented_commands(heading: str) -> list[list[str]]:
    """The commands of the first ```bash block under ``heading`` in docs/intervals.md."""
    import re
    import shlex

    text = (Path(__file__).resolve().parents[1] / "docs" / "intervals.md").read_text(encoding="utf-8")
    (block,) = re.findall(rf"## {re.escape(heading)}\n.*?```bash\n(.*?)```", text, re.S)
    commands = [shlex.split(line) for line in block.strip().splitlines()]
    assert all(c[:3] == ["python", "-m", "histoseg"] for c in commands)
    return commands


def run_documented(command: list[str], ckpt: Path) -> int:
    # The tiny slide is a TIFF: the documented glob of SVS files becomes a glob of TIFFs.
    return cli_exit_code([str(ckpt) if a == "CKPT" else a.replace("*.svs", "*.tif") for a in command[3:]])


def test_the_loop_and_the_cross_fitting_in_docs_intervals_run_as_written(
    tiny_slide_checkpoint, tmp_path, monkeypatch, capsys
):
    """docs/intervals.md's loop, then its cross-fitting commands, in a fresh folder (CKPT filled in)."""
    folder, ckpt = tiny_slide_checkpoint
    loop = documented_commands("The loop")
    crossfit = documented_commands("Fine-tuning from the same clicks (cross-fitting)")
    assert [c[3] for c in loop] == ["quantify", "sample", "quantify"]
    assert [c[3] for c in crossfit] == ["sample", "fit", "fit", "quantify"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "slides").mkdir()
    shutil.copy(folder / "good.tif", tmp_path / "slides" / "good.tif")
    truth = np.asarray(Image.open(folder / "good.png"))
    for command in loop:
        assert run_documented(command, ckpt) == 0, command
        if command[3] == "sample":
            classify_geojson(tmp_path / "points" / "good.points.geojson", truth)
    row = read_points_csv(tmp_path / "results" / "report.csv")[0]
    assert row["if_design"] == "stratified" and float(row["if_ci_low"]) <= float(row["if_estimate"])

    points = tmp_path / "points"
    assert run_documented(crossfit[0], ckpt) == 0
    manifest = json.loads((points / "crossfit" / "crossfit.json").read_text(encoding="utf-8"))
    held = manifest["slides"]["good"]["held_out"]
    ids = [r["id"] for r in read_points_csv(points / "good.points.csv")]
    assert sorted(held[0] + held[1]) == sorted(ids) and not set(held[0]) & set(held[1])
    for k in range(2):  # each fold trains on the other fold's points only
        assert len(read_points_csv(points / "crossfit" / f"good.fold{k}.csv")) == len(held[1 - k])
    for command in crossfit[1:3]:
        assert run_documented(command, ckpt) == 0, command
    capsys.readouterr()
    # The base checkpoint is no fold model: one line, exit 2, the results untouched.
    before = (tmp_path / "results" / "report.csv").read_bytes()
    wrong = [*crossfit[3][:-1], "CKPT"]
    assert run_documented(wrong, ckpt) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --crossfit")
    assert (tmp_path / "results" / "report.csv").read_bytes() == before
    assert run_documented(crossfit[3], ckpt) == 0
    result = json.loads((tmp_path / "results" / ".good.result.json").read_text(encoding="utf-8"))["point_counting"]
    assert "cross-fitted PPI" in result["estimators"]
    assert result["estimate"]["if_method"].startswith("cross-fitted PPI")


def test_an_interrupted_round_is_resumed_but_a_look_alike_file_is_not_overwritten(sampled, capsys):
    """A round file left by an interrupted run (unclassified, ours) is rewritten; a user's file that
    only contains histoseg's marker text somewhere is not ours and stops the run."""
    ckpt, slides, points, truth, args = sampled
    classify_geojson(points / "good.points.geojson", truth)
    lookalike = points / "good.points.round2.geojson"
    text = json.dumps({"type": "FeatureCollection", "note": "histoseg sample", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1.0, 1.0]},
         "properties": {"name": "p9999", "comment": "histoseg sample"}}]})  # fmt: skip
    lookalike.write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert cli_exit_code([*args, "--n", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {lookalike}")
    assert lookalike.read_text(encoding="utf-8") == text
    lookalike.unlink()
    assert cli_exit_code([*args, "--n", "10"]) == 0
    assert read_design(points / "good.design.json").last_round == 2
