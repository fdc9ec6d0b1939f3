"""report/figures.py: the cohort plot draws the counted points' intervals beside the model's dots."""

import numpy as np

from histoseg.report.figures import (
    cohort_figure,
    write_cohort_png,
)
from tests.report.test_html import ok_result, point_cohort


def test_cohort_plot_draws_the_intervals(tmp_path):
    from matplotlib.container import ErrorbarContainer

    results = point_cohort() + [{"slide": "d.svs", "status": "failed", "error": "x"}]
    figure = cohort_figure(results)
    ax = figure.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1  # one series: the slides with counted points (a, b), not c
    line, _, (segments,) = bars[0]
    xs, ys = line.get_data()
    assert np.allclose(xs, [38.2, 29.0])
    ends = sorted((round(s[0][0], 6), round(s[1][0], 6)) for s in segments.get_segments())
    assert ends == [(24.0, 34.5), (33.1, 43.4)]
    dots = next(c for c in ax.collections if c.get_offsets().shape == (3, 2))
    model_y = {round(x, 6): y for x, y in dots.get_offsets()}
    assert (
        ys[0] < model_y[10.0] and ys[1] < model_y[30.0]
    )  # the estimate drawn just below its slide's model dot
    assert line.get_marker() == "s" and dots.get_paths()  # a square beside the model's dot
    assert [t.get_text() for t in ax.texts].count("model outside") == 1
    colours = {t.get_text(): t.get_color() for t in ax.get_yticklabels()}
    assert colours["a.svs"] == "#d00000" and colours["b.svs"] != "#d00000"
    # without points: no error bars at all
    plain = cohort_figure([ok_result("c.svs", "c", 0.2)])
    assert not [c for c in plain.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert write_cohort_png(tmp_path / "cohort.png", results).stat().st_size > 5_000
