"""The progress display: bars on a terminal, one line per slide without one (a log file)."""

from __future__ import annotations

import csv
import re
import shutil

from histoseg.io.progress import Display, slide_line, tile_bar
from tests.conftest import cli_exit_code


def test_slide_line_known_answers():
    ok = {"status": "ok", "interstitial_fraction": 0.23149}
    assert slide_line(2, 3, "B.svs", ok, 41.24) == "slide 2/3 B.svs: ok, interstitial fraction 0.231, 41.2 s"
    failed = {"status": "failed", "interstitial_fraction": None, "error": "cannot read slide\ntraceback"}
    assert slide_line(1, 3, "C.svs", failed, 0.5) == "slide 1/3 C.svs: failed, cannot read slide, 0.5 s"
    assert slide_line(3, 3, "A.svs", ok, None) == (
        "slide 3/3 A.svs: ok (reused: already complete), interstitial fraction 0.231"
    )


def test_without_a_terminal_there_are_lines_and_no_bars(capsys):
    """Under pytest stderr is not a terminal, as when quantify's output goes to a log."""
    display = Display(True, 2)
    assert display.bar is None and display.start_slide("a.tif") is None
    display.end_slide({"status": "ok", "interstitial_fraction": 0.5})
    display.end_slide({"status": "ok", "interstitial_fraction": 0.25}, "b.tif")
    display.close()
    assert re.fullmatch(
        r"slide 1/2 a\.tif: ok, interstitial fraction 0\.500, \d+\.\d s\n"
        r"slide 2/2 b\.tif: ok \(reused: already complete\), interstitial fraction 0\.250\n",
        capsys.readouterr().err,
    )
    quiet = Display(False, 1)  # --no_progress: neither bars nor lines
    quiet.start_slide("a.tif")
    quiet.end_slide({"status": "ok"})
    assert capsys.readouterr().err == ""
    advance, stop = tile_bar(True, 10, "a.tif")
    advance(3)
    stop()
    assert capsys.readouterr().err == ""


def test_quantify_logs_one_line_per_slide(tiny_slide_checkpoint, tmp_path, capsys):
    folder, ckpt = tiny_slide_checkpoint
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("a.tif", "b.tif"):
        shutil.copy(folder / "good.tif", slides / name)
    args = ["quantify", "--ckpt_path", ckpt, "--slides", slides, "--out", tmp_path / "out", "--tile_size", "128"]
    capsys.readouterr()
    assert cli_exit_code(args) == 0
    err = capsys.readouterr().err
    with open(tmp_path / "out" / "report.csv", newline="", encoding="utf-8") as handle:
        fractions = {r["slide"]: float(r["interstitial_fraction"]) for r in csv.DictReader(handle)}
    lines = [line for line in err.splitlines() if line.startswith("slide ")]
    assert len(lines) == 2, err
    for k, (line, name) in enumerate(zip(lines, ("a.tif", "b.tif"), strict=True), 1):
        match = re.fullmatch(rf"slide {k}/2 {name}: ok, interstitial fraction (\d\.\d{{3}}), \d+\.\d s", line)
        assert match, line
        stem = name.removesuffix(".tif")
        assert float(match.group(1)) == round(fractions.get(stem, fractions.get(name, -1)), 3)
    assert cli_exit_code(args) == 0  # the rerun reuses both: still one line each
    again = [line for line in capsys.readouterr().err.splitlines() if line.startswith("slide ")]
    assert len(again) == 2 and all("reused: already complete" in line for line in again)
