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
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
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
