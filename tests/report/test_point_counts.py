"""report/point_counts.py: Wilson intervals and point-count fractions, known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from histoseg.labels.points import (
    PointSet,
)
from histoseg.report.point_counts import INTERSTITIAL_KEY, point_count_fractions, wilson_interval
from tests.labels.test_points import CLASSES


def test_wilson_interval_known_values():
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.236593, abs=1e-6) and high == pytest.approx(0.763407, abs=1e-6)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.277533, abs=1e-6))
    assert wilson_interval(10, 10) == (pytest.approx(0.722467, abs=1e-6), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_point_count_fractions_known_answer():
    labels = [0] * 10 + [1] * 30 + [2] * 60 + [3] * 10 + [4] * 0
    pts = PointSet(np.zeros(len(labels)), np.zeros(len(labels)), labels)
    out = point_count_fractions(pts, CLASSES)
    assert "background" not in out
    assert out["interstitium"].fraction == pytest.approx(30 / 100)
    assert out["tubules"].n == 60 and out["other"].n == 0 and out["other"].ci_low == 0.0
    assert (out["tubules"].ci_low, out["tubules"].ci_high) == pytest.approx(wilson_interval(60, 100))
    frac, low, high, n = out[INTERSTITIAL_KEY]
    assert frac == pytest.approx(0.3) and n == 30 and (low, high) == pytest.approx(wilson_interval(30, 100))
    counted = point_count_fractions(pts, CLASSES, exclude=())
    assert counted["background"].fraction == pytest.approx(10 / 110)
    empty = point_count_fractions(PointSet([], [], []), CLASSES)
    assert math.isnan(empty["tubules"].fraction) and empty["tubules"][1:3] == (0.0, 1.0)


def test_point_count_fractions_takes_any_object_with_labels():
    """Report arithmetic is duck-typed: a plain namespace with a label array counts like a PointSet."""
    from types import SimpleNamespace

    labels = np.array([1, 1, 1, 2, 3, 0, 0], np.uint8)
    plain = point_count_fractions(SimpleNamespace(label=labels), CLASSES)
    same = point_count_fractions(PointSet(np.zeros(7), np.zeros(7), labels), CLASSES)
    assert plain == same
    assert plain[INTERSTITIAL_KEY].fraction == pytest.approx(3 / 5) and plain[INTERSTITIAL_KEY].n == 3
