"""Allocation of points to strata: minimum per stratum, Neyman shares, anticipated spread."""

from __future__ import annotations

import numpy as np
import pytest

from histoseg.errors import ConfigError
from histoseg.sampling.allocation import allocate, anticipated_sd, stratum_sd


def test_proportional_and_neyman_allocation_known_answers():
    w = np.array([0.5, 0.3, 0.2])
    assert allocate(w, 20).tolist() == [9, 6, 5]  # 2 each, then 14 split 7 / 4.2 / 2.8
    assert allocate(w, 20, sd=np.array([0.1, 0.1, 0.5])).tolist() == [6, 4, 10]
    assert allocate(np.array([0.7, 0.0, 0.3]), 10).tolist() == [6, 0, 4]  # 2 each + 4.2 / 1.8
    assert allocate(w, 6).tolist() == [2, 2, 2]


def test_too_few_points_for_the_strata_is_one_error_line():
    with pytest.raises(ConfigError, match="--n 5: the 3 strata need at least 2 points each"):
        allocate(np.array([0.5, 0.3, 0.2]), 5)


def test_unknown_spread_takes_the_largest_known_one():
    counts = allocate(np.array([0.5, 0.5]), 12, sd=np.array([np.nan, 0.2]))
    assert counts.tolist() == [6, 6]


def test_anticipated_and_counted_spread():
    sd = anticipated_sd(["interstitium inside", "tubules edge", "background inside", "frame"])
    assert sd[0] == pytest.approx(0.3) and sd[1] == pytest.approx(np.sqrt(0.35 * 0.65))
    assert sd[2] == pytest.approx(np.sqrt(0.02 * 0.98)) and sd[3] == pytest.approx(0.5)
    counted = stratum_sd(np.array([0.0, 1.0, 5.0, 5.0, 7.0]), np.array([0, 0, 1, 1, 2]), 3)
    assert counted[0] == pytest.approx(np.sqrt(0.5)) and counted[1] == 0 and np.isnan(counted[2])
