"""``histoseg corrections`` keeps the error contract (issue 28, class 1): usage errors, damaged geometry
and an unwritable ``--out`` each give one ``error:`` line, exit status 2, no traceback and no file."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from tests.reliability.helpers import expect_one_error


def square(x0, y0, side, cls):
    ring = [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"classification": {"name": cls}},
    }


def write(path: Path, features) -> Path:
    # json.dumps writes NaN as the literal NaN, as a damaged export would hold it
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    predicted = write(tmp_path / "a.geojson", [square(0, 0, 8, "tubules")])
    corrected = write(tmp_path / "b.geojson", [square(0, 0, 8, "tubules"), square(20, 0, 4, "glomeruli")])
    return tmp_path, ["corrections", "--predicted", predicted, "--corrected", corrected]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ([], "the following arguments are required: --out"),
        (["--out", "x.geojson", "--tolerance", "abc"], "argument --tolerance: invalid float value: 'abc'"),
        (["--out", "x.geojson", "--no_such_option"], "unrecognized arguments: --no_such_option"),
    ],
)
def test_corrections_bypasses_the_contract_usage_errors(capsys, files, extra, needle):
    folder, args = files
    line = expect_one_error(capsys, ["histoseg corrections: ", needle, "--help"], *args, *extra)
    assert line.startswith("error: histoseg corrections: "), line
    assert "usage:" not in capsys.readouterr().err
    assert not (folder / "x.geojson").exists()


def bad_geometries():
    nan_ring = [[0, 0], [math.nan, 0], [10, 10], [0, 10], [0, 0]]
    return [
        ({"type": "Polygon", "coordinates": [nan_ring]}, "Polygon has a coordinate nan"),
        ({"type": "LineString", "coordinates": [[0, 0], [math.inf, 1]]}, "LineString has a coordinate inf"),
        ({"type": "Blob", "coordinates": [[0, 0]]}, "unknown geometry type 'Blob'"),
        ({"type": "Polygon", "coordinates": [[["a", 0], [1, 1], [0, 1], ["a", 0]]]}, "'a' that is not"),
        ({"type": "Polygon", "coordinates": [[0, 0], [1, 1], [0, 1], [0, 0]]}, "not nested as GeoJSON"),
        ({"type": "Point"}, "Point without 'coordinates'"),
        ({"type": "GeometryCollection", "geometries": [{"type": "Curve", "coordinates": []}]}, "'Curve'"),
    ]


@pytest.mark.parametrize(("geometry", "needle"), bad_geometries())
@pytest.mark.parametrize("which", ["--predicted", "--corrected"])
def test_corrections_bypasses_the_contract_bad_geometry(capsys, files, geometry, needle, which):
    folder, args = files
    damaged = {**square(0, 0, 1, "other"), "geometry": geometry}
    bad = write(folder / "bad.geojson", [square(0, 0, 8, "tubules"), damaged])
    args[args.index(which) + 1] = bad
    expect_one_error(capsys, [f"{bad}: feature 1: ", needle, "; "], *args, "--out", folder / "x.geojson")
    assert not (folder / "x.geojson").exists()


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in: read-only for a normal user; /sys when running as root."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        probe = candidate / f".probe-{os.getpid()}"
        try:
            probe.write_bytes(b"")
        except OSError:
            return candidate
        probe.unlink()
    pytest.fail("no unwritable folder on this machine")  # pragma: no cover


def test_corrections_bypasses_the_contract_unwritable_out(capsys, files, tmp_path):
    folder, args = files
    out = unwritable_folder(tmp_path) / "labels.geojson"
    try:
        needles = [f"{out}: cannot write the labels", "writable folder for --out"]
        expect_one_error(capsys, needles, *args, "--out", out)
    finally:
        (tmp_path / "read-only").chmod(0o755)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]


def test_corrections_keeps_the_contract_when_all_is_well(capsys, files):
    folder, args = files
    from tests.reliability.helpers import run

    code, lines, err = run(capsys, *args, "--out", folder / "x.geojson")
    assert (code, lines) == (0, []), err
    assert json.loads((folder / "x.geojson").read_text())["features"][0]["properties"]["classification"] == {
        "name": "glomeruli"
    }


@pytest.mark.parametrize(
    "text",
    [
        '["histoseg_corrections", 1]',
        '{"note": "histoseg_corrections"}',
        '{"type": "FeatureCollection", "histoseg_corrections": "yes", "features": []}',
        '"histoseg_corrections"',
    ],
)
def test_ownership_a_user_file_can_pass_corrections_out(capsys, files, text):
    """Issue 28, class 2: a user's JSON that merely contains the marker string is never overwritten."""
    folder, args = files
    mine = folder / "mine.json"
    mine.write_text(text)
    needle = f"{mine}: exists and was not written by 'histoseg corrections'"
    expect_one_error(capsys, [needle], *args, "--out", mine)
    assert mine.read_text() == text
    # the command's own output is still recognised and rewritten on a rerun
    from tests.reliability.helpers import run

    assert run(capsys, *args, "--out", folder / "labels.geojson")[0] == 0
    assert run(capsys, *args, "--out", folder / "labels.geojson")[0] == 0
