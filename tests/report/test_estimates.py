"""Per-slide estimates from counted points: the estimators by design, the headline and its rule."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from histoseg.report.counting import CountedSlide
from histoseg.report.estimates import HEADLINE, FoldModel, slide_point_estimates
from histoseg.report.point_counts import wilson_interval
from histoseg.sampling.design import crossfit_folds, new_design
from histoseg.sampling.frame import frame_from_label_map

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]


def truth_map() -> np.ndarray:
    truth = np.zeros((60, 80), np.uint8)
    truth[5:55, 5:75] = 1
    truth[10:30, 10:40] = 2
    truth[35:50, 50:70] = 3
    return truth


def true_if(labels: np.ndarray) -> float:
    return float((labels == 1).sum() / np.isin(labels, [1, 2, 3]).sum())


def counted_on(truth: np.ndarray, kind: str, n: int = 60, seed: int = 3) -> CountedSlide:
    h, w = truth.shape
    strata = "class+edge" if kind == "stratified" else "none"
    frame = frame_from_label_map(truth, (1.0, 1.0), (w, h), CLASSES, 0, strata=strata, margin_cells=2)
    design = new_design("s", kind, frame, n=n, seed=seed)
    label = truth[design.y.astype(int), design.x.astype(int)]
    return CountedSlide(design, list(design.ids), design.x, design.y, label, 1, 0, [])


def prediction(labels: np.ndarray) -> SimpleNamespace:
    counts = np.bincount(labels.ravel(), minlength=len(CLASSES))
    return SimpleNamespace(classes=CLASSES, counts=counts, shape=labels.shape, mpp=1.0, slide_mpp=1.0, unlabelled_pixels=0)


@pytest.mark.parametrize("kind", ["random", "grid"])
def test_a_perfect_model_gives_the_true_fraction_by_ppi_and_post_stratification(kind):
    truth = truth_map()
    rows = [{"class": c} for c in CLASSES]
    result = slide_point_estimates(counted_on(truth, kind), prediction(truth), truth, rows, 0)
    assert result["estimators"]["PPI"]["estimate"] == pytest.approx(true_if(truth))
    assert result["estimators"]["post-stratified"]["estimate"] == pytest.approx(true_if(truth))
    assert result["ppi_domain"] == "frame"


@pytest.mark.parametrize("kind", ["random", "grid", "stratified"])
def test_the_headline_follows_the_documented_rule_and_fills_the_report_rows(kind):
    truth = truth_map()
    model = truth.copy()
    model[20:40, 40:60] = 2  # the model calls a patch of interstitium tubules
    rows = [{"class": c} for c in CLASSES]
    counted = counted_on(truth, kind)
    result = slide_point_estimates(counted, prediction(model), model, rows, 0)
    first = next(k for k in HEADLINE[kind] if k in result["estimators"])
    head = result["estimate"]
    chosen = result["estimators"][first]
    assert head["if_method"].startswith(first) and head["if_estimate"] == chosen["estimate"]
    assert (head["if_ci_low"], head["if_ci_high"]) == (chosen["ci_low"], chosen["ci_high"])
    assert head["if_design"] == kind and head["if_points"] == len(counted.ids)
    assert head["if_points_needed"] >= len(counted.ids)
    for row in rows:
        assert row["if_estimate"] == head["if_estimate"] and row["if_design"] == kind
    tubules = next(r for r in rows if r["class"] == "tubules")
    assert tubules["point_count"] == int((counted.label == 2).sum())


def test_points_without_a_design_get_the_wilson_interval():
    truth = truth_map()
    counted = counted_on(truth, "random")
    counted.design = None
    counted.ids = [None] * len(counted.x)
    result = slide_point_estimates(counted, prediction(truth), truth, [], 0)
    k, m = int((counted.label == 1).sum()), int(np.isin(counted.label, [1, 2, 3]).sum())
    est = result["estimators"]["point counting"]
    assert est["estimate"] == pytest.approx(k / m)
    assert (est["ci_low"], est["ci_high"]) == pytest.approx(wilson_interval(k, m))
    assert result["design"] == "none" and result["ppi_domain"] in ("slide", "tissue")


def test_cross_fitted_ppi_uses_each_points_own_fold_model_and_needs_a_partition():
    truth = truth_map()
    model = truth.copy()
    model[20:40, 40:60] = 2
    counted = counted_on(truth, "stratified")
    folds = crossfit_folds(counted.design, 2, seed=0)
    held = [{i for i, f in folds.items() if f == k} for k in range(2)]
    perfect = [FoldModel(truth, held[0]), FoldModel(truth, held[1])]
    result = slide_point_estimates(counted, prediction(model), model, [], 0, folds=perfect)
    est = result["estimators"]["cross-fitted PPI"]
    assert est["estimate"] == pytest.approx(true_if(truth))
    assert result["estimate"]["if_method"].startswith("cross-fitted PPI")
    overlapping = [FoldModel(truth, held[0] | {next(iter(held[1]))}), FoldModel(truth, held[1])]
    result = slide_point_estimates(counted, prediction(model), model, [], 0, folds=overlapping)
    assert "cross-fitted PPI" not in result["estimators"]
