"""index.html, the cohort page: content and escaping (known answers), rebuilt on rerun, and rendered in a
real headless Chromium (skipped when none is installed) with every row and image present and no sideways
scrolling at 1280 and 1920 px (screenshots in the test's tmp folder, or in $HISTOSEG_SCREENSHOTS)."""

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histoseg.quantify import run_quantify
from histoseg.report.areas import class_colors
from histoseg.report.figures import (
    PREDICTION_BOX_KEY,
    blend_labels,
    write_cohort_png,
    write_overlay_png,
)
from histoseg.report.html import _fmt, _thumbnail, render_html, write_html_report
from histoseg.report.tables import model_outside_headline, slide_headline
from tests.test_quantify import make_slide, tiny_predictor

ROWS = [
    {"class": "background", "pixels": 1828, "area_um2": 5e5, "area_mm2": 0.5, "fraction_of_tissue": float("nan")},
    {"class": "interstitium", "pixels": 5, "area_um2": 628300.0, "area_mm2": 0.6283, "fraction_of_tissue": 0.25,
     "tta_fraction_min": float("nan"), "tta_fraction_max": float("nan")},
    {"class": "tubules", "pixels": 12064, "area_um2": 20.0, "area_mm2": 2e-05, "fraction_of_tissue": 0.75,
     "tta_fraction_min": float("nan"), "tta_fraction_max": float("nan")},
]  # fmt: skip

EXTRA = {"checkpoint_sha256": "ab" * 32, "classes": ["background", "interstitium", "tubules"],
         "settings": {"precision": "auto", "precision_used": ["32"], "background_class": 0, "tta": False,
                      "skip_glass": True, "overlap": 0.5, "channels_last": None, "mpp_override": None,
                      "target_halfwidth": 0.05},
         "training_seed": None, "world_size": 1}  # fmt: skip


def ok_result(name, stem, fraction, **extra):
    return {"slide": name, "stem": stem, "status": "ok", "error": "", "interstitial_fraction": fraction,
            "mpp": 0.5, "mpp_source": "metadata", "rows": ROWS, **extra}  # fmt: skip


def cohort_heads(page):
    table = re.search(r'<table id="cohort">.*?</table>', page).group(0)
    return table, re.findall(r"<th\b[^>]*>(.*?)</th>", table)


def row_cells(table, index=0, cls="ok"):
    return re.findall(r"<td[^>]*>(.*?)</td>", re.findall(rf'<tr class="{cls}">.*?</tr>', table)[index])


def test_number_formats():
    assert [_fmt(v, "percent") for v in (0.25, 0.38249, 1.0)] == ["25.0 %", "38.2 %", "100.0 %"]
    assert [_fmt(v, "area") for v in (0.6283, 2e-05, 12345.6, 3.0, 0.0, float("nan"))] == [
        "0.628", "0.0000200", "12300", "3.00", "0", ""]  # fmt: skip
    assert _fmt(12064, "count") == "12,064"


def test_page_content_and_escaping():
    results = [
        ok_result("<script>alert(1)</script>.svs", "evil", 0.25),
        {"slide": "b&b.svs", "stem": "b_b", "status": "failed", "error": 'truncated <file> "x"'},
    ]  # fmt: skip
    extra = json.loads(json.dumps(EXTRA))
    page = render_html(results, extra)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;.svs" in page
    assert "truncated &lt;file&gt; &quot;x&quot;" in page and "b&amp;b.svs" in page
    table, heads = cohort_heads(page)
    assert table.count("<tr") == 3  # header + 2 slides
    # chosen columns, human names; the error column because a slide failed; no TTA column without --tta
    assert heads == ["", "Slide", "Status", "Interstitial fraction (model)", "Tissue (mm²)", "Error"]
    first = row_cells(table)
    assert first[2:] == ["ok", "25.0 %", "0.628", ""]  # tissue = interstitium + tubules, 3 significant digits
    assert 'class="failed"' in table and row_cells(table, cls="failed")[-1] == "truncated &lt;file&gt; &quot;x&quot;"
    # per slide, in a <details>: human column names, one number format, no empty (tta) columns
    section = re.search(r'<details class="slide" id="slide-evil">.*?</details>', page).group(0)
    class_heads = re.findall(r"<th\b[^>]*>(.*?)</th>", section)
    assert class_heads == ["Class", "Area (mm²)", "Share of tissue", "Pixels in the label map"]
    assert "<td>0.0000200</td>" in section and "<td>12,064</td>" in section and "<td>75.0 %</td>" in section
    assert not re.search(r"\de[+-]\d", page) and "area_um2" not in page and "tta" not in section
    assert (
        'href="evil.geojson"' in page
        and 'href=".evil.result.json"' in page
        and 'src="evil.overlay.png"' in page
    )
    # settings in words, no Python reprs
    settings = re.search(r"<h2>Settings</h2>(.*?)</dl>", page).group(1)
    assert "<dt>Precision used</dt><dd>float32</dd>" in settings
    assert "<dt>Test-time augmentation</dt><dd>no (quantify --tta not used)</dd>" in settings
    assert "<dt>Background (glass) class</dt><dd>background</dd>" in settings
    assert "<dt>Tile overlap</dt><dd>50 % of a tile</dd>" in settings
    assert "<dt>Target half-width of the 95 % interval</dt><dd>±5.0 %</dd>" in settings
    assert "from the slide&#x27;s metadata: 1 slide" in settings
    for repr_ in ("[", "True", "False", "None"):
        assert repr_ not in settings, repr_
    extra["settings"]["checkpoint_sha256"] = "ab" * 32
    assert render_html(results, extra).count("ab" * 32) == 1  # shown once, also when settings repeat it
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network


def test_columns_only_when_they_hold_values():
    tta = ok_result("a.svs", "a", 0.3, tta_fraction_min=0.281, tta_fraction_max=0.352)
    page = render_html([tta, ok_result("b.svs", "b", 0.2)], EXTRA)
    table, heads = cohort_heads(page)
    assert heads == ["", "Slide", "Status", "Interstitial fraction (model)", "Tissue (mm²)",
                     "Model variability under rotation"]  # fmt: skip  (no Error column: nothing failed)
    assert row_cells(table, 0)[-1] == "28.1–35.2 %" and row_cells(table, 1)[-1] == ""
    assert "not a confidence interval" in table
    without = render_html([ok_result("b.svs", "b", 0.2)], EXTRA)
    assert "rotation" not in cohort_heads(without)[0] and "Error" not in cohort_heads(without)[1]


def test_thumbnail_is_the_prediction_panel(tmp_path):
    """The overlay is a figure (slide | prediction, legend); the table thumbnail is its prediction panel."""
    labels = np.ones((40, 60), np.uint8)  # all interstitium
    write_overlay_png(tmp_path / "s.overlay.png", np.zeros((40, 60, 3), np.uint8), labels,
                      ["background", "interstitium", "tubules"], rows=ROWS, title="s")  # fmt: skip
    with Image.open(tmp_path / "s.overlay.png") as whole:
        assert PREDICTION_BOX_KEY in whole.info and np.asarray(whole.convert("RGB")).max() == 255  # white margins
    uri = _thumbnail(tmp_path / "s.overlay.png")
    thumb = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))
    colour = blend_labels(np.zeros((1, 1, 3), np.uint8), np.ones((1, 1), np.uint8),
                          class_colors(["background", "interstitium", "tubules"]), [0])[0, 0]  # fmt: skip
    assert thumb.shape[1] == 128 and abs(thumb.shape[0] - 128 * 40 / 60) <= 1.5  # the panel's aspect, 128 wide
    assert np.abs(thumb.astype(int) - colour.astype(int)).max() <= 2  # only the painted map, no frame/legend
    # an image without the box (an older overlay) is shrunk whole
    Image.fromarray(np.full((50, 400, 3), 255, np.uint8)).save(tmp_path / "plain.png")
    plain = _thumbnail(tmp_path / "plain.png")
    assert Image.open(io.BytesIO(base64.b64decode(plain.split(",", 1)[1]))).size == (128, 16)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    slides = root / "slides"
    slides.mkdir()
    make_slide(slides / "kidney <1>.tif", height=300, width=400, seed=0)
    make_slide(slides / "b.tif", height=260, width=300, seed=1)
    out = root / "out"
    assert run_quantify(tiny_predictor(), str(slides), out, progress=False) == 0
    return root, slides, out


def test_quantify_writes_and_rebuilds_the_page(cohort, tmp_path, capsys):
    root, slides, out = cohort
    page = (out / "index.html").read_text()
    assert page.count('<tr class="ok">') == 2 and "kidney &lt;1&gt;.tif" in page
    capsys.readouterr()
    work = tmp_path / "out"
    shutil.copytree(out, work)  # result files keep their times: written by an earlier run
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\0" + b"\0" * 64)
    assert (
        run_quantify(tiny_predictor(), [str(slides), str(broken)], work, progress=True) == 1
    )  # resume + 1 slide
    err = capsys.readouterr().err.splitlines()
    assert err[-3].startswith("quantify: 3 slides: 0 done, 2 skipped (already complete), 1 failed; ")
    assert err[-2].startswith("  failed: broken.tif: ") and err[-1] == f"report: {work / 'index.html'}"
    page = (work / "index.html").read_text()
    assert page.count('<tr class="ok">') == 2 and page.count('<tr class="failed">') == 1
    assert not [p for p in work.iterdir() if ".tmp-" in p.name]


def browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium installed (apt-get install chromium); the page was not rendered")


def headless(exe, profile, *args):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=5000"]  # fmt: skip
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


def test_page_renders_in_headless_chromium(cohort, tmp_path):
    exe = browser()
    _, _, out = cohort
    url = (out / "index.html").as_uri()
    dom = headless(exe, tmp_path / "profile", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    root = re.search(r"<html[^>]*>", dom.stdout).group(0)
    # the inline script ran: 2 table rows; every image (2 thumbnails, cohort plot, 2 overlays) decoded
    assert 'data-rows="2"' in root, root
    assert 'data-images-ok="5/5"' in root, root
    # a slide's link opens its folded details (the page opened at its anchor)
    linked = headless(exe, tmp_path / "profile", "--dump-dom", url + "#slide-kidney_1")
    assert re.search(r'<details class="slide" id="slide-kidney_1" open', linked.stdout), linked.stdout[-500:]
    assert not re.search(r'<details class="slide" id="slide-b" open', linked.stdout)


def widest_page(out, folder):
    """The quantify page's slides with everything that widens the table: counted points, a flag, the TTA
    spread, a long scanner file name and a failed slide with a long reason."""
    folder.mkdir()
    results = []
    for path in sorted(out.glob(".*.result.json")):
        shutil.copy(out / path.name[1:].replace(".result.json", ".overlay.png"), folder)
        results.append(json.loads(path.read_text()))
    first, second = results
    first["point_counting"] = headline(0.382, 0.331, 0.434, 120, 410)  # the model's value is far outside
    second["point_counting"] = headline(second["interstitial_fraction"], 0.0, 0.05, 1_234, 5_678)
    second.update(slide="2026-12-07_kidney_biopsy_scanner-42_with_a_very_long_generated_file_name.svs",
                  tta_fraction_min=0.001, tta_fraction_max=0.004)  # fmt: skip
    failed = {"slide": "broken_" + "x" * 60 + ".svs", "stem": "broken", "status": "failed",
              "error": "cannot read slide (not a TIFF file: the first bytes are zero); check that the file "
                       "is complete and not corrupted, or copy it again from the scanner"}  # fmt: skip
    write_cohort_png(folder / "cohort.png", [*results, failed])
    return write_html_report(folder, [*results, failed], {**EXTRA, "settings": {**EXTRA["settings"], "tta": True}})


@pytest.mark.parametrize("width", [1280, 1920])
def test_page_fits_the_window_in_headless_chromium(cohort, tmp_path, width):
    """No sideways scrolling at 1280 and 1920 px: neither the page nor the cohort table is wider than the
    window (the script records the overflow in data-overflow), also with points, TTA and a failure."""
    exe = browser()
    _, _, out = cohort
    shots = Path(os.environ.get("HISTOSEG_SCREENSHOTS") or tmp_path)  # set it to keep the screenshots
    shots.mkdir(parents=True, exist_ok=True)
    pages = {"plain": out / "index.html", "widest": widest_page(out, tmp_path / "widest")}
    for name, page in pages.items():
        url = page.as_uri()
        dom = headless(exe, tmp_path / "profile", f"--window-size={width},1000", "--dump-dom", url)
        assert dom.returncode == 0, dom.stderr[-2000:]
        root = re.search(r"<html[^>]*>", dom.stdout).group(0)
        assert 'data-overflow="0"' in root or re.search(r'data-overflow="-\d+"', root), (name, width, root)
        rows = 3 if name == "widest" else 2
        assert f'data-rows="{rows}"' in root and re.search(r'data-images-ok="(\d+)/\1"', root), root
        shot = shots / f"index-{name}-{width}.png"
        run = headless(exe, tmp_path / "profile", f"--screenshot={shot}", f"--window-size={width},1000", url)
        assert run.returncode == 0 and shot.stat().st_size > 10_000
        with Image.open(shot) as image:
            assert image.size == (width, 1000)
    # the check can fail: the same widest page at 500 px does overflow
    narrow = headless(exe, tmp_path / "profile", "--window-size=500,1000", "--dump-dom", pages["widest"].as_uri())
    overflow = int(re.search(r'data-overflow="(-?\d+)"', narrow.stdout).group(1))
    assert overflow > 0


def headline(estimate, low, high, points, needed, target=0.05):
    return {"design": "grid", "points_used": points, "estimate": {
        "if_estimate": estimate, "if_ci_low": low, "if_ci_high": high, "if_method": "post-stratified (grid, Matérn)",
        "if_points": points, "if_points_needed": needed, "if_more_points": max(0, needed - points),
        "if_design": "grid", "target_halfwidth": target}}  # fmt: skip


def point_cohort():
    """Slide a: model 10 %, points 38.2 % (33.1–43.4): flagged. Slide b: model 30 %, points 29 % (24–34.5):
    not flagged. Slide c: no points."""
    return [
        ok_result("a.svs", "a", 0.10, point_counting=headline(0.382, 0.331, 0.434, 120, 410)),
        ok_result("b.svs", "b", 0.30, point_counting=headline(0.29, 0.24, 0.345, 300, 290),
                  tta_fraction_min=0.281, tta_fraction_max=0.352),
        ok_result("c.svs", "c", 0.20),
    ]  # fmt: skip


def test_slide_headline_and_flag_known_answers():
    a, b, c = point_cohort()
    assert slide_headline(a)["if_estimate"] == 0.382 and slide_headline(c) is None
    assert model_outside_headline(a) is True and model_outside_headline(b) is False
    assert model_outside_headline(c) is None
    assert model_outside_headline({**b, "interstitial_fraction": 0.345}) is False  # the interval's end is inside
    # from the report rows when the result has no point_counting field; more points derived
    rows = [{**ROWS[1], "if_estimate": 0.5, "if_ci_low": 0.4, "if_ci_high": 0.6, "if_method": "point counting",
             "if_points": 80, "if_points_needed": 200, "if_design": "random"}]  # fmt: skip
    from_rows = slide_headline({"interstitial_fraction": 0.3, "rows": rows})
    assert from_rows["if_more_points"] == 120 and from_rows["if_method"] == "point counting"
    assert model_outside_headline({"interstitial_fraction": 0.3, "rows": rows}) is True
    nan_rows = [{**rows[0], "if_estimate": float("nan")}]
    assert slide_headline({"rows": nan_rows}) is None


def test_cohort_table_shows_the_headline_and_flags_disagreement():
    page = render_html(point_cohort(), EXTRA)
    table, heads = cohort_heads(page)
    assert heads == ["", "Slide", "Status", "Interstitial fraction (model)",
                     "Estimate from counted points (95 % interval)", "Method", "Points", "More points for ±5.0 %",
                     "Tissue (mm²)", "Model variability under rotation"]  # fmt: skip
    a = row_cells(table, 0, "ok disagree")
    assert a[3] == "10.0 %" and a[4].startswith("38.2 % (33.1–43.4) <span class=\"flag\" title=\"the model-only")
    assert a[4].endswith(">model outside</span>") and a[5:8] == ["post-stratified (grid, Matérn)", "120", "290"]
    b, c = row_cells(table, 0), row_cells(table, 1)
    assert b[3:8] == ["30.0 %", "29.0 % (24.0–34.5)", "post-stratified (grid, Matérn)", "300", "0"]
    assert b[9] == "28.1–35.2 %" and c[4] == "no counted points"
    assert table.count('class="flag"') == 1 and table.count('<tr class="ok disagree">') == 1
    # the rotation spread is labelled as the model's variability, away from the intervals, and explained
    assert heads.index("Model variability under rotation") - heads.index("More points for ±5.0 %") > 1
    legend = page[page.index("</table>") : page.index("<h2>Cohort plot")]
    assert "model outside</span> marks a slide whose model-only value lies outside that interval" in legend
    assert "not a confidence interval" in legend
    details = re.search(r'<details class="slide" id="slide-a">.*?</details>', page).group(0)
    assert "from counted points 38.2 % (33.1–43.4)" in details and "410 in all" in details
