"""Design variances: random, stratified and the systematic grid (Matérn's local estimator), with the guard."""

from __future__ import annotations

import math

import numpy as np
import pytest

from histoseg.sampling.variance import Z_95, DesignSample, design_covariance, design_mean, design_variance

# A 4 x 3 grid (i = column, j = row) and its values, row by row.
GRID_VALUES = np.array([[1, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0]], np.float64)
II, JJ = np.meshgrid(np.arange(4), np.arange(3))
LATTICE = np.stack([II.ravel(), JJ.ravel()], axis=1)


def test_matern_variance_of_a_hand_computed_grid():
    # The six 2 x 2 contrasts u(i,j) - u(i+1,j) - u(i,j+1) + u(i+1,j+1) are +1, -1, -1, +1, +1, -1:
    # sigma² = mean(T²) / 4 = 1/4 and the variance of the mean of 12 points is 1/48.
    sample = DesignSample.grid(LATTICE)
    u = GRID_VALUES.ravel()
    assert design_mean(sample, u) == pytest.approx(6 / 12)
    assert design_variance(sample, u, guard=False) == pytest.approx(1 / 48)
    assert design_variance(sample, u) == pytest.approx(1 / 48)  # the guard (0.805 / 4) is below 1/4


def test_a_constant_grid_keeps_the_guard_floor():
    sample = DesignSample.grid(LATTICE)
    rate = (0 + Z_95**2 / 2) / (6 + Z_95**2)  # no non-zero contrast among six
    assert design_variance(sample, np.ones(12), guard=False) == 0
    assert design_variance(sample, np.ones(12)) == pytest.approx(rate / 4 / 12)


def test_a_grid_with_too_few_blocks_uses_neighbour_pairs_then_the_random_variance():
    lattice = LATTICE[(LATTICE[:, 0] < 3)]  # 3 x 3: 4 blocks, 12 pairs
    u = GRID_VALUES[:, :3].ravel()
    d = [u[a] - u[b] for a in range(9) for b in range(9)
         if (abs(lattice[a] - lattice[b]).sum() == 1) and a < b]
    expected = np.mean(np.square(d)) / 2 / 9
    assert design_variance(DesignSample.grid(lattice), u, guard=False) == pytest.approx(expected)
    line = np.stack([np.arange(4) * 2, np.zeros(4)], axis=1)  # no two points are neighbours
    values = np.array([1.0, 0.0, 0.0, 1.0])
    assert design_variance(DesignSample.grid(line), values, guard=False) == pytest.approx(values.var(ddof=1) / 4)
    binomial = DesignSample.grid(LATTICE, "random")
    assert design_variance(binomial, GRID_VALUES.ravel(), guard=False) == pytest.approx(
        GRID_VALUES.ravel().var(ddof=1) / 12
    )


def test_stratified_textbook_variance():
    # Cochran (5.6): sum W_h² s_h² / n_h; stratum 0 (W 0.25): 1, 3 (s² 2); stratum 1 (W 0.75): 10, 20 (s² 50).
    sample = DesignSample.stratified(np.array([0, 0, 1, 1]), np.array([0.25, 0.75]))
    y = np.array([1.0, 3.0, 10.0, 20.0])
    assert design_mean(sample, y) == pytest.approx(0.25 * 2 + 0.75 * 15)
    assert design_variance(sample, y, guard=False) == pytest.approx(0.0625 * 2 / 2 + 0.5625 * 50 / 2)
    assert math.isinf(design_variance(DesignSample.stratified(np.array([0, 1, 1]), [0.5, 0.5]), y[:3]))
    assert math.isnan(design_mean(DesignSample.stratified(np.array([0, 0]), [0.5, 0.5]), y[:2]))


def test_random_variance_and_the_guard_around_the_most_common_value():
    sample = DesignSample.random(10)
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1.0])
    assert design_variance(sample, y, guard=False) == pytest.approx(y.var(ddof=1) / 10)
    rate = (1 + Z_95**2 / 2) / (10 + Z_95**2)
    assert design_variance(sample, y) == pytest.approx(max(y.var(ddof=1), rate - rate**2) / 10)
    rate0 = (Z_95**2 / 2) / (10 + Z_95**2)
    assert design_variance(sample, np.full(10, 0.3)) == pytest.approx(rate0 / 10)


def test_covariance_by_polarisation():
    sample = DesignSample.random(5)
    u, v = np.array([1.0, 2, 3, 4, 5]), np.array([2.0, 1, 4, 3, 6])
    assert design_covariance(sample, u, v) == pytest.approx(np.cov(u, v)[0, 1] / 5)
