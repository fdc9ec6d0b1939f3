"""index.html, the cohort page: content and escaping (known answers), rebuilt on rerun, and rendered in a
real headless Chromium (skipped when none is installed) with every row and image present."""

import re
import shutil
import subprocess

import pytest
from test_cohort import make_slide, tiny_predictor

from histoseg.quantify import run_quantify
from histoseg.report.html import find_intervals, render_html
from histoseg.report.summary import run_summary

ROWS = [
    {"class": "background", "area_mm2": 0.5, "fraction_of_tissue": float("nan")},
    {"class": "interstitium", "area_mm2": 0.25, "fraction_of_tissue": 0.25, "tta_lo": 0.2, "tta_hi": 0.3},
    {"class": "tubules", "area_mm2": 0.75, "fraction_of_tissue": 0.75, "tta_lo": 0.7, "tta_hi": 0.8},
]


def ok_result(name, stem, fraction, **extra):
    return {"slide": name, "stem": stem, "status": "ok", "error": "", "interstitial_fraction": fraction,
            "mpp": 0.5, "mpp_source": "metadata", "rows": ROWS, **extra}  # fmt: skip


def test_find_intervals_generic():
    row = {"point_fraction": 0.3, "point_ci_low": 0.2, "point_ci_high": 0.4, "x_lo": 1, "x_hi": 2,
           "ppi_low": 0.1, "ppi_high": 0.5, "ppi": 0.3, "interstitial_fraction_ci": [0.1, 0.2], "lonely_lo": 1}  # fmt: skip
    assert find_intervals(row) == [
        ("point", "point_fraction", "point_ci_low", "point_ci_high"),
        ("x", None, "x_lo", "x_hi"),
        ("ppi", "ppi", "ppi_low", "ppi_high"),
        ("interstitial_fraction", None, "interstitial_fraction_ci[0]", "interstitial_fraction_ci[1]"),
    ]


def test_page_content_and_escaping():
    results = [
        ok_result("<script>alert(1)</script>.svs", "evil", 0.25, interstitial_fraction_lo=0.2, interstitial_fraction_hi=0.31),
        {"slide": "b&b.svs", "stem": "b_b", "status": "failed", "error": 'truncated <file> "x"'},
    ]  # fmt: skip
    extra = {"checkpoint_sha256": "ab" * 32, "classes": ["background", "interstitium", "tubules"],
             "settings": {"precision": "bf16-mixed", "background_class": "background"}}  # fmt: skip
    page = render_html(results, extra)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;.svs" in page
    assert "truncated &lt;file&gt; &quot;x&quot;" in page and "b&amp;b.svs" in page
    table = re.search(r'<table id="cohort">.*?</table>', page).group(0)
    assert table.count("<tr") == 3  # header + 2 slides
    heads = re.findall(r"<th\b[^>]*>(.*?)</th>", table)
    assert heads == ["", "slide", "status", "error", "interstitial fraction", "interstitial fraction [interval]",
                     "interstitium % of tissue", "tubules % of tissue", "interstitium mm²", "tubules mm²",
                     "tissue mm²", "mpp (source)"]  # fmt: skip
    first = re.findall(r"<td[^>]*>(.*?)</td>", re.findall(r"<tr class=\"ok\">.*?</tr>", table)[0])
    assert first[4:12] == [
        "25.0 %",
        "25.0 % [20.0 %, 31.0 %]",
        "25.0 %",
        "75.0 %",
        "0.25",
        "0.75",
        "1",
        "0.5 (metadata)",
    ]
    assert 'class="failed"' in table
    # per-slide rows: every column, intervals merged; links relative and quoted
    assert '<th class="t">tta</th>' in page and "0.2 [0.2, 0.3]" not in page and "[0.2, 0.3]" in page
    assert (
        'href="evil.geojson"' in page
        and 'href=".evil.result.json"' in page
        and 'src="evil.overlay.png"' in page
    )
    assert "bf16-mixed" in page and "metadata: 1 slides" in page
    extra["settings"]["checkpoint_sha256"] = "ab" * 32
    assert render_html(results, extra).count("ab" * 32) == 1  # shown once, also when settings repeat it
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network


def test_run_summary_known_answer():
    results = [ok_result("a.svs", "a", 0.3, slide_dimensions=[4000, 2500]), ok_result("b.svs", "b", 0.3),
               {"slide": "c.svs", "status": "failed", "error": "not a slide;  fix it"}]  # fmt: skip
    assert run_summary(results, [True, False, True], 20.0, "out/index.html") == [
        "quantify: 3 slides: 1 done, 1 skipped (already complete), 1 failed; 20.0 s wall time, "
        "20.0 s per slide done (0.5 Mpx/s)",
        "  failed: c.svs: not a slide; fix it",
        "report: out/index.html",
    ]


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
    shot = tmp_path / "report.png"
    run = headless(exe, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,1000", url)
    assert run.returncode == 0 and shot.stat().st_size > 10_000
