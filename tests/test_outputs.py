"""outputs.py: the cohort report's ownership record; a user's report.json that only looks like histoseg's is not."""

from __future__ import annotations

import json

import pytest

from histoseg.outputs import REPORT_RECORD, is_ours


@pytest.mark.parametrize(
    "report",
    [
        {"histoseg_version": None, "definitions": {}, "slides": []},
        {"histoseg_version": "0.1", "slides": []},
        {"notes": ["histoseg_version", "slides"]},
        ["histoseg_version", "slides"],
    ],
)
def test_ownership_a_user_file_can_pass_cohort_report(tmp_path, report):
    """A user's report.json that only looks like histoseg's does not make the cohort names histoseg's."""
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert not is_ours(tmp_path / "report.csv", tmp_path)
    ours = {"histoseg_version": "0.1", "definitions": {}, "slides": []}
    (tmp_path / "report.json").write_text(json.dumps(ours))
    assert is_ours(tmp_path / "report.csv", tmp_path)
    assert set(REPORT_RECORD) == {"histoseg_version", "definitions", "slides"}


def test_work_lost_two_concurrent_runs_of_same_named_slides_keep_both(tmp_path):
    """Issue 28, class 9: two runs of different slides with the same file name into one --out both exited
    0 and the second replaced the first's outputs. Two processes, started together."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, make_labelled_slide
    from tests.reliability.helpers import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "m.ckpt")
    slides = []
    for i, folder in enumerate(("d1", "d2")):
        (tmp_path / folder).mkdir()
        make_labelled_slide(tmp_path / folder, "s", seed=i, size=(640, 512))
        slides.append(tmp_path / folder / "s.tif")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "histoseg", "quantify", "--ckpt_path", str(ckpt), "--slides", str(slide),
             "--out", str(out), "--tile_size", "128", "--no_progress"],
            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
        )
        for slide in slides
    ]
    errors = [run.communicate(timeout=600)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    recorded = {}
    for marker in out.glob(".*.result.json"):
        data = json.loads(marker.read_text())
        assert data["status"] == "ok"
        recorded[data["key"]["slide"]["path"]] = data["stem"]
        assert all((out / f"{data['stem']}{suffix}").is_file() for suffix in (".labels.tif", ".geojson", ".overlay.png"))
    assert sorted(recorded) == sorted(str(s.resolve()) for s in slides), recorded
    assert sorted(recorded.values()) == ["s", "s.tif"]
    # A rerun of either finds its own outputs (the stems are stable), replacing nothing of the other.
    before = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith((".", "report", "index", "cohort"))}
    rerun = subprocess.run(
        [sys.executable, "-m", "histoseg", "quantify", "--ckpt_path", str(ckpt), "--slides", str(slides[1]),
         "--out", str(out), "--tile_size", "128", "--no_progress"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr
    after = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith((".", "report", "index", "cohort"))}
    assert after == before
    assert json.loads((out / "report.json").read_text())["slides"][0]["stem"] == recorded[str(slides[1].resolve())]


def test_work_lost_two_names_of_one_file_are_both_quantified(capsys, tmp_path):
    """Issue 28, class 9: two slide paths that resolve to one file (a symbolic and a hard link) were reduced
    to one slide without a word; each is now quantified under its own name, with one line per extra name."""
    import os

    from tests.conftest import make_labelled_slide
    from tests.reliability.helpers import run, tiny_checkpoint

    slides = tmp_path / "slides"
    slides.mkdir()
    make_labelled_slide(slides, "a", seed=0)
    (slides / "a.png").unlink()
    (slides / "b.tif").symlink_to(slides / "a.tif")
    os.link(slides / "a.tif", slides / "c.tif")
    ckpt = tiny_checkpoint(tmp_path / "m.ckpt")
    status, _, err = run(capsys, "quantify", "--ckpt_path", ckpt, "--slides", slides, "--out", tmp_path / "out", "--no_progress")
    assert status == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["slide"] for r in report["slides"]] == ["a.tif", "b.tif", "c.tif"]
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 2, err
    assert warnings[0].startswith(f"warning: {slides / 'b.tif'}: the same file as {slides / 'a.tif'}")
    assert warnings[1].startswith(f"warning: {slides / 'c.tif'}: the same file as {slides / 'a.tif'}")
