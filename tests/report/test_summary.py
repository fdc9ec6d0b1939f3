"""report/summary.py: the run summary printed after quantify, known answer."""

from histoseg.report.summary import run_summary
from tests.report.test_html import ok_result


def test_run_summary_known_answer():
    results = [ok_result("a.svs", "a", 0.3, slide_dimensions=[4000, 2500]), ok_result("b.svs", "b", 0.3),
               {"slide": "c.svs", "status": "failed", "error": "not a slide;  fix it"}]  # fmt: skip
    assert run_summary(results, [True, False, True], 20.0, "out/index.html") == [
        "quantify: 3 slides: 1 done, 1 skipped (already complete), 1 failed; 20.0 s wall time, "
        "20.0 s per slide done (0.5 Mpx/s)",
        "  failed: c.svs: not a slide; fix it",
        "report: out/index.html",
    ]
