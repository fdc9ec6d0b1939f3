"""Ratio estimators of the interstitial fraction: known answers and coverage by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from histoseg.sampling.estimators import point_counting, points_needed, post_stratified, prediction_powered
from histoseg.sampling.frame import CountingFrame
from histoseg.sampling.placement import lattice_points, random_points, square_lattice, stratified_points
from histoseg.sampling.variance import DesignSample


def test_a_perfect_model_gives_a_zero_width_ppi_interval_at_the_true_value():
    rng = np.random.default_rng(0)
    cls = rng.integers(0, 4, 50)
    a, b = (cls == 1).astype(float), np.isin(cls, (1, 2, 3)).astype(float)
    truth_a, truth_b = 0.21, 0.7  # the model's (= the truth's) means over the whole frame
    est = prediction_powered(DesignSample.random(50), a, b, a, b, truth_a, truth_b, guard=False)
    assert est.estimate == pytest.approx(0.3) and est.ci_low == pytest.approx(0.3) and est.ci_high == pytest.approx(0.3)
    guarded = prediction_powered(DesignSample.random(50), a, b, a, b, truth_a, truth_b)
    assert guarded.ci_low < 0.3 < guarded.ci_high and guarded.halfwidth < 0.1


def test_stratified_ratio_estimator_and_its_textbook_variance():
    # Cochran section 6.11 (combined ratio): R = sum W_h a_h / sum W_h b_h,
    # V = sum W_h² s²(a - R b)_h / n_h / (sum W_h b_h)².
    stratum = np.array([0, 0, 0, 0, 1, 1, 1])
    a = np.array([1, 1, 0, 0, 0, 1, 0], float)
    b = np.array([1, 1, 1, 0, 1, 1, 1], float)
    w = np.array([0.6, 0.4])
    est = point_counting(DesignSample.stratified(stratum, w), a, b, guard=False)
    big_a, big_b = 0.6 * 0.5 + 0.4 / 3, 0.6 * 0.75 + 0.4 * 1.0
    ratio = big_a / big_b
    z = a - ratio * b
    var = sum(w[h] ** 2 * z[stratum == h].var(ddof=1) / (stratum == h).sum() for h in (0, 1)) / big_b**2
    assert est.method == "stratified"
    assert est.estimate == pytest.approx(ratio) == pytest.approx(0.509803921)
    assert est.se == pytest.approx(math.sqrt(var))
    assert est.ci_low == pytest.approx(ratio - 1.959963984540054 * math.sqrt(var))


def test_post_stratification_is_the_stratified_estimator_with_the_map_weights():
    a = np.array([1, 1, 0, 0, 0, 1, 0], float)
    b = np.array([1, 1, 1, 0, 1, 1, 1], float)
    post = np.array([0, 0, 0, 0, 1, 1, 1])
    model_a, model_b = np.array([1.0, 0.0]), np.array([1.0, 1.0])  # stratum 0: interstitium, 1: tubules
    est = post_stratified(DesignSample.random(7), a, b, post, np.array([0.6, 0.4]), model_a, model_b, guard=False)
    assert est.estimate == pytest.approx(point_counting(DesignSample.stratified(post, [0.6, 0.4]), a, b).estimate)
    # A post-stratum with one point takes the model's value (here: tubules, a = 0, b = 1) with its weight.
    one = np.array([0, 0, 0, 0, 0, 0, 1])
    sparse = post_stratified(DesignSample.random(7), a, b, one, np.array([0.9, 0.1]), model_a, model_b)
    mean_a, mean_b = a[:6].mean(), b[:6].mean()
    assert sparse.estimate == pytest.approx(0.9 * mean_a / (0.9 * mean_b + 0.1 * 1.0))
    # Glass (a = b = 0 in the model) without points is never counted as the largest stratum's class.
    glass = post_stratified(DesignSample.random(6), a[:6], b[:6], np.zeros(6, int), np.array([0.8, 0.2]),
                            np.array([1.0, 0.0]), np.array([1.0, 0.0]))
    assert glass.estimate == pytest.approx(a[:6].mean() / b[:6].mean())


def test_power_tuning_ignores_a_model_that_knows_nothing():
    rng = np.random.default_rng(3)
    cls = rng.integers(0, 4, 400)
    a, b = (cls == 1).astype(float), np.isin(cls, (1, 2, 3)).astype(float)
    noise = rng.integers(0, 4, 400)
    fa, fb = (noise == 1).astype(float), np.isin(noise, (1, 2, 3)).astype(float)
    tuned = prediction_powered(DesignSample.random(400), a, b, fa, fb, 0.5, 0.9, power_tuned=True)
    plain = prediction_powered(DesignSample.random(400), a, b, fa, fb, 0.5, 0.9)
    counting = point_counting(DesignSample.random(400), a, b)
    assert tuned.lam < 0.15
    assert tuned.halfwidth < plain.halfwidth
    assert abs(tuned.estimate - counting.estimate) < 0.02


def test_points_needed_scales_the_variance_as_one_over_n():
    est = point_counting(DesignSample.random(4), np.array([1, 0, 0, 1.0]), np.ones(4), guard=False)
    # se = sqrt(1/3 / 4) / 1; half-width 0.05 needs 4 * (1.96 se / 0.05)² points.
    assert points_needed(est, 0.05) == math.ceil(4 * (1.959963984540054 * est.se / 0.05) ** 2)
    assert points_needed(est, 0.9) == 4  # never fewer than counted


def field(size: int = 240, seed: int = 0) -> np.ndarray:
    """Classes 1 (interstitium), 2 (tubules) and 4 (other) in blobs: a spatially correlated field."""
    rng = np.random.default_rng(seed)
    out = np.ones((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(60):
        cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(6, 18))]
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 2 if rng.random() < 0.8 else 4
    return out


def error_model(truth: np.ndarray, seed: int = 1) -> np.ndarray:
    """The truth with tubules grown 2 px into the interstitium and ten blobs called interstitium."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    model = truth.copy()
    model[ndimage.binary_dilation(truth == 2, iterations=2) & (truth == 1)] = 2
    yy, xx = np.mgrid[: truth.shape[0], : truth.shape[1]]
    for _ in range(10):
        cy, cx = rng.integers(0, truth.shape[0], 2).tolist()
        model[(yy - cy) ** 2 + (xx - cx) ** 2 <= 100] = 1
    return model


@pytest.mark.parametrize("design", ["random", "grid", "stratified"])
def test_intervals_cover_the_true_fraction_by_simulation(design):
    truth = field()
    model = error_model(truth)
    size = truth.shape[0]
    exact = (truth == 1).sum() / np.isin(truth, (1, 2)).sum()
    frame = CountingFrame(np.zeros((size, size), np.uint8), (1, 1), (size, size), ("t",))
    strata_frame = CountingFrame(np.where(model == 1, 0, 1).astype(np.uint8), (1, 1), (size, size), ("i", "r"))
    rng = np.random.default_rng(7)
    fa_all, fb_all = (model == 1).mean(), np.isin(model, (1, 2)).mean()
    hits = {"counting": 0, "ppi": 0}
    reps = 300
    for _ in range(reps):
        if design == "random":
            x, y = random_points(frame, 60, rng)
            sample = DesignSample.random(60)
        elif design == "grid":
            x, y, index = lattice_points(frame, square_lattice(frame, 60, rng))
            sample = DesignSample.grid(index)
        else:
            x, y, stratum = stratified_points(strata_frame, np.array([30, 30]), rng)
            sample = DesignSample.stratified(stratum, strata_frame.weights())
        r, c = y.astype(int), x.astype(int)
        a, b = (truth[r, c] == 1).astype(float), np.isin(truth[r, c], (1, 2)).astype(float)
        fa, fb = (model[r, c] == 1).astype(float), np.isin(model[r, c], (1, 2)).astype(float)
        for name, est in (
            ("counting", point_counting(sample, a, b)),
            ("ppi", prediction_powered(sample, a, b, fa, fb, fa_all, fb_all)),
        ):
            hits[name] += est.ci_low <= exact <= est.ci_high
    for name, count in hits.items():
        assert count / reps >= 0.92, (design, name, count / reps)
