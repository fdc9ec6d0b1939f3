"""Class 8 of issue 15: a property-based hunt for tracebacks in the command line.

Hypothesis generates option values, grid-point files (CSV and GeoJSON) and slide tables, valid and
invalid, and runs ``histoseg quantify`` / ``histoseg fit`` in-process on tiny slides with a tiny
checkpoint. Every run must either succeed (exit 0, or 1 with each failed slide listed in the report)
or end with exit 2, exactly one ``error:`` line and no output file; never a traceback.

Examples per test: 25 in CI (``HISTOSEG_HYPOTHESIS_EXAMPLES=N`` for more); no deadline.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from histoseg import KIDNEY_CLASSES
from tests.conftest import ROOT, cli_exit_code, make_labelled_slide
from tests.reliability.helpers import tiny_checkpoint

EXAMPLES = int(os.environ.get("HISTOSEG_HYPOTHESIS_EXAMPLES", "25"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
TINY = str(ROOT / "tests" / "conf" / "tiny.yaml")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("assets")
    slide, labels, _ = make_labelled_slide(folder, "s", seed=0, size=(160, 128))
    return folder, slide, labels, tiny_checkpoint(folder / "m.ckpt", mpp=2.0)


def run_cli(args: list[object]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_exit_code([str(a) for a in args])
    return code, err.getvalue()


def check_outcome(code: int, err: str, out: Path) -> None:
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    if code == 2:
        assert len(lines) == 1, err[-3000:]
        assert "; " in lines[0], lines[0]
        assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()], sorted(out.rglob("*"))
    else:
        assert code in (0, 1), err[-3000:]
        report = json.loads((out / "report.json").read_text())
        failed = [s for s in report["slides"] if s["status"] == "failed"]
        assert len(failed) == len(lines) and (code == 1) == any(s["status"] != "ok" for s in report["slides"])


NUMBERS = st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e-3", "1e9", "abc", "", "0.5", "2", "0.25"])
CLASS_NAMES = st.sampled_from([*KIDNEY_CLASSES, "Tubules", "cortex", "", "3", "9", "-1"])
COORD = st.one_of(st.integers(-10, 200), st.sampled_from(["nan", "x", "", "1e30", "5.5"]))


@st.composite
def points_file(draw):
    rows = draw(st.lists(st.tuples(COORD, COORD, CLASS_NAMES), max_size=6))
    if draw(st.booleans()):
        header = draw(st.sampled_from(["x,y,class", "X,Y,Class", "x,y", "class,y,x", ""]))
        return ".csv", "\n".join([header, *(f"{x},{y},{c}" for x, y, c in rows)]) + "\n"
    features = [
        {
            "type": "Feature",
            "geometry": {
                "type": draw(st.sampled_from(["Point", "LineString", "Polygon"])),
                "coordinates": [x, y],
            },
            "properties": {"classification": {"name": c}} if draw(st.booleans()) else {},
        }
        for x, y, c in rows
    ]
    document = draw(st.sampled_from(["collection", "list", "broken", "polygon"]))
    if document == "collection":
        return ".geojson", json.dumps({"type": "FeatureCollection", "features": features})
    if document == "list":
        return ".geojson", json.dumps(features)
    if document == "polygon":
        return ".geojson", json.dumps({"type": "Polygon", "coordinates": []})
    return ".geojson", '{"type": "FeatureCollection", "features": ['


@given(
    mpp=st.one_of(st.none(), NUMBERS),
    overlap=st.one_of(st.none(), st.sampled_from(["0", "0.5", "0.99", "1", "-0.1", "nan"])),
    batch=st.one_of(st.none(), st.sampled_from(["1", "3", "0", "-2", "x"])),
    shard=st.one_of(
        st.none(), st.sampled_from([("0", "1"), ("1", "1"), ("0", "0"), ("-1", "2"), ("a", "2")])
    ),
    points=st.one_of(st.none(), points_file()),
    slides=st.sampled_from(["file", "folder", "glob", "nothing", "empty"]),
)
@SETTINGS
def test_property_quantify(assets, mpp, overlap, batch, shard, points, slides):
    folder, slide, _, ckpt = assets
    work = Path(tempfile.mkdtemp(dir=folder))
    try:
        shutil.copy(slide, work / "s.tif")
        target = {
            "file": work / "s.tif",
            "folder": work,
            "glob": work / "*.tif",
            "nothing": work / "*.svs",
            "empty": "",
        }
        args: list[object] = [
            "quantify",
            "--ckpt_path",
            ckpt,
            "--slides",
            target[slides],
            "--out",
            work / "out",
        ]
        args.append("--no_progress")
        for option, value in (("--mpp", mpp), ("--overlap", overlap), ("--batch_size", batch)):
            if value is not None:
                args.append(f"{option}={value}")
        if shard is not None:
            args += [f"--rank={shard[0]}", f"--world_size={shard[1]}"]
        if points is not None:
            (work / "points").mkdir()
            (work / "points" / f"s.points{points[0]}").write_text(points[1])
            args += ["--points", work / "points"]
        code, err = run_cli(args)
        check_outcome(code, err, work / "out")
    finally:
        shutil.rmtree(work, ignore_errors=True)


TABLE_CELL = st.sampled_from(["s.tif", "s.png", "missing.tif", "", "dense", "points", "train", "val", "x"])


@given(
    header=st.sampled_from(
        ["slide,labels,split,mpp", "slide,labels,kind,split", "image,labels", "slide", ""]
    ),
    rows=st.lists(st.tuples(TABLE_CELL, TABLE_CELL, TABLE_CELL, NUMBERS), max_size=3),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]),
    crlf=st.booleans(),
)
@settings(parent=SETTINGS, max_examples=max(EXAMPLES // 5, 3))
def test_property_fit_slide_tables(assets, header, rows, encoding, crlf):
    """Only tables that fail before training are kept short: a valid one trains for one step."""
    folder, slide, labels, _ = assets
    work = Path(tempfile.mkdtemp(dir=folder))
    try:
        shutil.copy(slide, work / "s.tif")
        shutil.copy(labels, work / "s.png")
        text = "\n".join([header, *(",".join(r) for r in rows)]) + "\n"
        (work / "slides.csv").write_bytes(text.replace("\n", "\r\n" if crlf else "\n").encode(encoding))
        args = ["fit", "--config", TINY, "--data.init_args.slides", work / "slides.csv"]
        args += ["--trainer.default_root_dir", work / "run", "--trainer.max_steps", "1"]
        args += ["--trainer.enable_progress_bar", "false"]
        code, err = run_cli(args)
        assert "Traceback" not in err, err[-3000:]
        lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
        if code == 2:
            assert len(lines) == 1 and "; " in lines[0], err[-3000:]
            assert not list(work.rglob("*.ckpt"))
        else:
            assert code == 0 and not lines, err[-3000:]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def folder_state(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (what a refused command must leave as it was)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_refusal_or_success(code: int, err: str, before: dict[str, bytes], folder: Path) -> None:
    """Exit 0/1 without an error line, or exit 2 with one ``error: <what>; <fix>`` line and every file
    under ``folder`` as it was; never a traceback."""
    assert "Traceback" not in err, err[-3000:]
    event(f"exit {code}")
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    if code == 2:
        assert len(lines) == 1 and "; " in lines[0], err[-3000:]
        assert folder_state(folder) == before
    else:
        assert code in (0, 1) and not lines, err[-3000:]


COORDINATE = st.one_of(st.integers(-5, 40), st.sampled_from([math.nan, math.inf, 1e300, "1", None]))


@st.composite
def geometry(draw):
    kind = draw(st.sampled_from(["Polygon", "MultiPolygon", "LineString", "Point", "Blob", None, "GeometryCollection"]))
    ring = draw(st.lists(st.lists(COORDINATE, min_size=0, max_size=3), min_size=0, max_size=6))
    if draw(st.booleans()) and len(ring) >= 3:
        ring = [*ring, ring[0]]
    coordinates = {"Polygon": [ring], "MultiPolygon": [[ring]], "LineString": ring, "Point": ring[:1] and ring[0]}
    if kind == "GeometryCollection":
        return {"type": kind, "geometries": draw(st.sampled_from([[], "x", [{"type": "Point", "coordinates": [1, 2]}]]))}
    return {"type": kind, "coordinates": coordinates.get(kind, ring)}


@st.composite
def geojson_document(draw):
    square = [[0, 0], [8, 0], [8, 8], [0, 8], [0, 0]]
    features = [
        {
            "type": "Feature",
            "geometry": draw(st.one_of(st.just({"type": "Polygon", "coordinates": [square]}), geometry())),
            "properties": draw(
                st.sampled_from([{}, {"classification": {"name": "tubules"}}, {"classification": "x"}, None, []])
            ),
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    shape = draw(st.sampled_from(["collection", "list", "broken", "object", "array_of_junk"]))
    if shape == "collection":
        return json.dumps({"type": "FeatureCollection", "features": features})
    if shape == "list":
        return json.dumps(features)
    if shape == "object":
        return json.dumps({"histoseg_corrections": "yes", "features": "none"})
    if shape == "array_of_junk":
        return json.dumps([1, "histoseg_corrections", None])
    return '{"type": "FeatureCollection", "features": ['


def qupath_export(*squares: tuple[int, str]) -> str:
    """A FeatureCollection of classified squares (x offset, class), as QuPath exports them."""
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[x, 0], [x + 8, 0], [x + 8, 8], [x, 8], [x, 0]]]},
            "properties": {"classification": {"name": name}},
        }
        for x, name in squares
    ]
    return json.dumps({"type": "FeatureCollection", "features": features})


@given(
    predicted=st.one_of(st.just(qupath_export((0, "tubules"))), geojson_document()),
    corrected=st.one_of(st.just(qupath_export((0, "tubules"), (20, "glomeruli"))), geojson_document()),
    tolerance=st.one_of(st.none(), NUMBERS),
    out=st.sampled_from(["fresh", "user_json", "look_alike", "folder", "missing_folder", "predicted", "rerun"]),
)
@SETTINGS
def test_property_corrections(assets, predicted, corrected, tolerance, out):
    """Issue 28: ``corrections`` keeps the contract for any GeoJSON, tolerance and --out."""
    folder = assets[0]
    work = Path(tempfile.mkdtemp(dir=folder))
    try:
        (work / "a.geojson").write_text(predicted)
        (work / "b.geojson").write_text(corrected)
        target = {
            "fresh": work / "labels.geojson",
            "user_json": work / "user.json",
            "look_alike": work / "mine.geojson",
            "folder": work,
            "missing_folder": work / "no" / "such" / "labels.geojson",
            "predicted": work / "a.geojson",
            "rerun": work / "labels.geojson",
        }[out]
        (work / "user.json").write_text('{"a": 1}')
        (work / "mine.geojson").write_text('{"note": "histoseg_corrections", "features": ["histoseg_corrections"]}')
        args = ["corrections", "--predicted", work / "a.geojson", "--corrected", work / "b.geojson", "--out", target]
        if tolerance is not None:
            args.append(f"--tolerance={tolerance}")
        if out == "rerun":
            run_cli(args)
        before = folder_state(work)
        code, err = run_cli(args)
        check_refusal_or_success(code, err, before, work)
        if code == 0:
            from histoseg.io.ownership import is_owned_json

            assert is_owned_json(target, {"histoseg_corrections": dict, "features": list})
            for name in ("user.json", "mine.geojson", "a.geojson", "b.geojson"):  # never a user's file
                assert (work / name).read_bytes() == before[name]
    finally:
        shutil.rmtree(work, ignore_errors=True)


@given(argv=st.lists(st.sampled_from(["-h", "--help", "--json", "x", "--out", "", "--verbose", "-"]), max_size=3))
@settings(parent=SETTINGS, max_examples=max(EXAMPLES // 3, 5))
def test_property_doctor(argv):
    """Issue 28: ``doctor`` with any arguments: its checks (exit 0 or 1) or one error line (exit 2)."""
    code, err = run_cli(["doctor", *argv])
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    if code == 2:
        assert len(lines) == 1 and "; " in lines[0], err[-3000:]
    else:
        assert code in (0, 1), err[-3000:]


@pytest.fixture(scope="module")
def quantified(assets):
    """A ``quantify`` output folder of the asset slide (what ``sample --results`` reads)."""
    folder, slide, _, ckpt = assets
    out = folder / "quantified"
    code, err = run_cli(["quantify", "--ckpt_path", ckpt, "--slides", slide, "--out", out, "--no_progress"])
    assert code == 0, err
    return out


@given(
    n=st.one_of(st.none(), NUMBERS, st.sampled_from(["1", "5", "100000"])),
    design=st.one_of(st.none(), st.sampled_from(["grid", "random", "stratified", "Stratified", ""])),
    strata=st.one_of(st.none(), st.sampled_from(["class+edge", "class", "none", "edge"])),
    seed=st.one_of(st.none(), st.sampled_from(["0", "7", "-1", "x", "1e3"])),
    margin=st.one_of(st.none(), NUMBERS),
    source=st.sampled_from(["results", "missing_results", "slides_only", "ckpt_only", "both"]),
    out=st.sampled_from(["fresh", "file", "again"]),
)
@SETTINGS
def test_property_sample(assets, quantified, n, design, strata, seed, margin, source, out):
    """Issue 28: ``sample`` keeps the contract for any options, sources and --out; a rerun adds a round."""
    folder, slide, _, ckpt = assets
    work = Path(tempfile.mkdtemp(dir=folder))
    try:
        target = work / ("points.txt" if out == "file" else "points")
        if out == "file":
            target.write_text("a user's file\n")
        args: list[object] = ["sample", "--out", target]
        args += {
            "results": ["--results", quantified],
            "missing_results": ["--results", work / "nothing"],
            "slides_only": ["--slides", slide],
            "ckpt_only": ["--ckpt_path", ckpt],
            "both": ["--ckpt_path", ckpt, "--slides", slide],
        }[source]
        for option, value in (("--n", n), ("--design", design), ("--strata", strata), ("--seed", seed), ("--margin_um", margin)):
            if value is not None:
                args.append(f"{option}={value}")
        if out == "again":
            run_cli(args)
        before = folder_state(work)
        code, err = run_cli(args)
        check_refusal_or_success(code, err, before, work)
        if code == 0:
            assert list(target.glob("*.design.json")), sorted(target.iterdir())
    finally:
        shutil.rmtree(work, ignore_errors=True)


CHANGES = ("nothing", "slide", "points_add", "points_edit", "points_remove", "checkpoint", "option")
"""Every input that affects a quantify result: the slide file, its points file, the checkpoint, an option."""


class Inputs:
    """The inputs of one quantify run in ``work`` (a slide, maybe its points, a checkpoint, --overlap) and
    the changes a user makes between runs."""

    def __init__(self, assets, work: Path) -> None:
        folder, slide, _, ckpt = assets
        self.work = work
        (work / "slides").mkdir()
        (work / "points").mkdir()
        shutil.copy(slide, work / "slides" / "s.tif")
        other, _, _ = make_labelled_slide(work, "other", seed=5, size=(160, 128))
        self.slides = {"a": slide, "b": other}
        self.checkpoints = {"a": ckpt, "b": tiny_checkpoint(work / "b.ckpt", mpp=2.0, favour=2)}
        self.points = {
            "a": "x,y,class\n40,40,interstitium\n100,60,tubules\n",
            "b": "x,y,class\n40,40,tubules\n100,60,tubules\n120,90,glomeruli\n",
        }
        self.state = {"slide": "a", "points": None, "checkpoint": "a", "overlap": "0"}
        self.runs = 0

    def change(self, what: str) -> None:
        state = self.state
        if what == "slide":
            state["slide"] = "b" if state["slide"] == "a" else "a"
            shutil.copy(self.slides[state["slide"]], self.work / "slides" / "s.tif")
        elif what == "points_add" or (what == "points_edit" and state["points"] is None):
            state["points"] = "a"
        elif what == "points_edit":
            state["points"] = "b" if state["points"] == "a" else "a"
        elif what == "points_remove":
            state["points"] = None
        elif what == "checkpoint":
            state["checkpoint"] = "b" if state["checkpoint"] == "a" else "a"
        elif what == "option":
            state["overlap"] = "0.5" if state["overlap"] == "0" else "0"
        points = self.work / "points" / "s.points.csv"
        if state["points"] is None:
            points.unlink(missing_ok=True)
        elif not points.is_file() or points.read_text() != self.points[state["points"]]:
            points.write_text(self.points[state["points"]])

    def quantify(self, out: Path) -> tuple[bytes, bytes]:
        """Run quantify into ``out``; its report.json and report.csv."""
        args = [
            "quantify", "--ckpt_path", self.checkpoints[self.state["checkpoint"]], "--slides",
            self.work / "slides" / "s.tif", "--out", out, "--points", self.work / "points",
            f"--overlap={self.state['overlap']}", "--no_progress",
        ]
        code, err = run_cli(args)
        assert code == 0, err[-3000:]
        return (out / "report.json").read_bytes(), (out / "report.csv").read_bytes()

    def rerun_matches_a_fresh_run(self, previous: tuple[bytes, bytes] | None, what: str) -> tuple[bytes, bytes]:
        """Change ``what``, rerun into the same folder: its report is byte-identical to a fresh run's on the
        same inputs (nothing stale), differs from the previous one after a change, equals it after none."""
        before = dict(self.state)
        self.change(what)
        rerun = self.quantify(self.work / "out")
        self.runs += 1
        fresh = self.quantify(self.work / f"fresh{self.runs}")
        assert rerun == fresh, f"stale report after changing {what}: {self.state}"
        if previous is not None:
            if self.state == before and what != "slide":  # nothing, or removing points there were none of
                assert rerun == previous
            else:
                assert rerun[0] != previous[0], f"the report did not change after changing {what}"
        return rerun


def test_rerun_after_changing_each_input_reflects_it_and_after_nothing_is_byte_identical(assets, tmp_path):
    """Issue 28 (must show): slides, points (added, edited, removed), checkpoint and options each change the
    report of a rerun exactly as a fresh run's; a rerun after no change gives byte-identical reports."""
    inputs = Inputs(assets, tmp_path)
    report = inputs.quantify(tmp_path / "out")
    for what in ("nothing", "slide", "nothing", "points_add", "points_edit", "nothing", "points_remove",
                 "checkpoint", "option", "nothing"):
        report = inputs.rerun_matches_a_fresh_run(report, what)
    assert inputs.state == {"slide": "b", "points": None, "checkpoint": "b", "overlap": "0.5"}


@given(steps=st.lists(st.sampled_from(CHANGES), min_size=1, max_size=3))
@settings(parent=SETTINGS, max_examples=max(EXAMPLES // 3, 5))
def test_property_rerun_sequences(assets, steps):
    """Issue 28: any sequence of changes between reruns: every rerun's report is a fresh run's."""
    work = Path(tempfile.mkdtemp(dir=assets[0]))
    try:
        inputs = Inputs(assets, work)
        report = inputs.quantify(work / "out")
        for what in steps:
            report = inputs.rerun_matches_a_fresh_run(report, what)
    finally:
        shutil.rmtree(work, ignore_errors=True)
