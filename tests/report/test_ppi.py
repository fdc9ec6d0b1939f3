"""Prediction-powered inference of the interstitial fraction: hand-computed values, exactness, coverage."""

import math

import numpy as np
import pytest

from histoseg import KIDNEY_CLASSES
from histoseg.errors import HistosegError
from histoseg.report.areas import label_map_values_at
from histoseg.report.ppi import Z_95, ppi_interstitial_fraction, ratio_ppi

BG, INT, TUB, GLOM, OTHER = range(5)


def test_hand_computed_value_on_a_tiny_label_map():
    """16-pixel map: 6 int, 6 tub, 4 glass; 4 points, one interstitium point the model calls tubule.

    Model means a = 6/16, b = 12/16; rectifiers r_a = (0, -1, 0, 0) -> -1/4, r_b = 0;
    theta = (6/16 + 1/4) / (12/16) = 5/6. Textbook variance: Var_i(r_a) = 1/4 (ddof 1), so
    se = sqrt(1/4 / (4 (3/4)^2)) = 1/3. Guarded (Wilson) variance: 1 disagreement of 4,
    rate = (1 + z^2/2) / (4 + z^2), m1 = -1, m2 = 1, Var = rate - rate^2.
    """
    labels = np.array([[INT, INT, INT, BG], [INT, INT, INT, BG], [TUB, TUB, TUB, BG], [TUB, TUB, TUB, BG]])
    counts = np.bincount(labels.ravel(), minlength=5)
    rows, cols = np.array([0, 2, 3, 0]), np.array([0, 0, 1, 3])
    model = label_map_values_at(labels.astype(np.uint8), rows, cols)
    assert model.tolist() == [INT, TUB, TUB, BG]
    reference = np.array([INT, INT, TUB, BG])
    est, domain = ppi_interstitial_fraction(counts, model, reference, KIDNEY_CLASSES, variance="sample")
    assert domain == "slide"
    assert est.estimate == pytest.approx(5 / 6, abs=1e-12)
    assert est.se == pytest.approx(1 / 3, abs=1e-12)
    assert est.ci_low == pytest.approx(5 / 6 - Z_95 / 3, abs=1e-12)
    assert est.ci_high == 1.0  # 5/6 + 1.96/3 clipped
    assert est.n == 4
    assert est.rectifier_num == pytest.approx(-0.25) and est.rectifier_den == 0.0
    guarded, _ = ppi_interstitial_fraction(counts, model, reference, KIDNEY_CLASSES)
    rate = (1 + Z_95**2 / 2) / (4 + Z_95**2)
    assert guarded.estimate == est.estimate
    assert guarded.se == pytest.approx(math.sqrt((rate - rate**2) / (4 * 0.75**2)), abs=1e-12)


def test_perfect_model_gives_zero_width_at_the_true_value():
    rng = np.random.default_rng(0)
    truth = rng.choice([BG, INT, TUB, GLOM, OTHER], size=(60, 80), p=[0.2, 0.3, 0.35, 0.05, 0.1])
    counts = np.bincount(truth.ravel(), minlength=5)
    rows, cols = rng.integers(0, 60, 150), rng.integers(0, 80, 150)
    at = truth[rows, cols]
    exact = counts[INT] / (counts[INT] + counts[TUB] + counts[GLOM])
    est, _ = ppi_interstitial_fraction(counts, at, at, KIDNEY_CLASSES, variance="sample")
    assert est.estimate == pytest.approx(exact, abs=1e-12)
    assert est.ci_low == pytest.approx(exact, abs=1e-12) and est.ci_high == pytest.approx(exact, abs=1e-12)
    assert est.se == 0.0
    # the default guard keeps a width that shrinks as 1/n: rate = (z^2/2) / (n + z^2), m2 = 1
    guarded, _ = ppi_interstitial_fraction(counts, at, at, KIDNEY_CLASSES)
    mu_b = (counts[INT] + counts[TUB] + counts[GLOM]) / counts.sum()
    rate = (Z_95**2 / 2) / (150 + Z_95**2)
    assert guarded.estimate == pytest.approx(exact, abs=1e-12)
    assert guarded.se == pytest.approx(math.sqrt(rate / (150 * mu_b**2)), abs=1e-12)
    assert guarded.ci_low < exact < guarded.ci_high


def test_tissue_domain_when_no_point_is_on_glass():
    """No glass point: the model's tissue pixels are the domain and points on predicted glass are dropped.

    Tissue pixels 12 (6 int, 6 tub): a = 1/2, b = 1; the point the model calls glass is dropped;
    the three others agree with the model, so theta = 1/2 exactly with zero width.
    """
    counts = np.array([4, 6, 6, 0, 0])
    model = np.array([INT, TUB, TUB, BG])
    reference = np.array([INT, TUB, TUB, TUB])
    est, domain = ppi_interstitial_fraction(counts, model, reference, KIDNEY_CLASSES, variance="sample")
    assert domain == "tissue"
    assert est.n == 3
    assert est.estimate == pytest.approx(0.5) and est.ci_high - est.ci_low == 0.0


def test_unbiased_and_covers_for_a_biased_model():
    """A model that paints 30 % of the interstitium as tubules (IF bias about -0.15): PPI stays centred.

    Fixed seed, 400 random point sets of 200 points: the PPI estimates average to the truth within
    0.01, their spread matches the delta-method standard error within 15 %, and the 95 % intervals
    cover the truth at least 93 % of the time; the model-only value is far off.
    """
    rng = np.random.default_rng(1)
    truth = rng.choice([BG, INT, TUB, GLOM, OTHER], size=200_000, p=[0.2, 0.4, 0.3, 0.05, 0.05])
    model = truth.copy()
    flip = (truth == INT) & (rng.random(truth.shape) < 0.3)
    model[flip] = TUB
    counts = np.bincount(model, minlength=5)
    exact = np.mean(truth == INT) / np.mean(np.isin(truth, [INT, TUB, GLOM]))
    model_only = counts[INT] / counts[[INT, TUB, GLOM]].sum()
    assert exact - model_only > 0.1
    estimates, ses, covered = [], [], []
    for _ in range(400):
        idx = rng.integers(0, truth.shape[0], 200)
        est, _ = ppi_interstitial_fraction(counts, model[idx], truth[idx], KIDNEY_CLASSES)
        estimates.append(est.estimate)
        ses.append(est.se)
        covered.append(est.ci_low <= exact <= est.ci_high)
    assert abs(np.mean(estimates) - exact) < 0.01
    assert np.std(estimates) == pytest.approx(np.mean(ses), rel=0.15)
    assert np.mean(covered) >= 0.93


def test_ratio_ppi_edge_cases():
    nan = ratio_ppi(0.1, 0.5, np.array([]), np.array([]), np.array([]), np.array([]))
    assert math.isnan(nan.estimate) and nan.n == 0
    # every point says the denominator is empty and the model agrees: mu_b = 0 -> undefined
    zero = ratio_ppi(0.0, 0.0, np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3))
    assert math.isnan(zero.estimate) and zero.n == 3
    with pytest.raises(ValueError):
        ratio_ppi(0.1, 0.5, np.zeros(2), np.zeros(3), np.zeros(2), np.zeros(2))


def test_label_map_values_at_reads_a_tiff_block_by_block(tmp_path):
    from histoseg.io.tiff import write_pyramid_tiff
    from histoseg.report.areas import label_colormap

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, (700, 900)).astype(np.uint8)
    path = tmp_path / "m.labels.tif"
    write_pyramid_tiff(path, labels, mpp=1.0, colormap=label_colormap(KIDNEY_CLASSES))
    rows, cols = rng.integers(0, 700, 500), rng.integers(0, 900, 500)
    np.testing.assert_array_equal(
        label_map_values_at(path, rows, cols, rows_per_block=128), labels[rows, cols]
    )
    with pytest.raises(HistosegError, match="outside the label map"):
        label_map_values_at(path, np.array([700]), np.array([0]))
