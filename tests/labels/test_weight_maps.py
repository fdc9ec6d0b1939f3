"""labels/weight_maps.py: the Ronneberger border weight map and class-frequency weights (known answers)."""

import math

import numpy as np
import pytest

from histoseg.labels.weight_maps import border_weight_map, class_frequency_weights


def two_objects(gap: int) -> np.ndarray:
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 5:20] = 2
    mask[10:30, 20 + gap : 40] = 2
    return mask


@pytest.mark.parametrize("gap", [1, 2, 3, 5])
def test_border_term_in_gap_matches_formula(gap):
    mask = two_objects(gap)
    w = border_weight_map(mask, [2], w0=10.0, sigma=5.0, class_weights={0: 1.0, 2: 1.0})
    for k in range(gap):  # gap pixel columns 20 .. 20+gap-1
        d1 = k + 1  # distance to the left object (last column 19)
        d2 = gap - k  # distance to the right object (first column 20+gap)
        expected = 1.0 + 10.0 * math.exp(-((d1 + d2) ** 2) / (2 * 25.0))
        assert w[20, 20 + k] == pytest.approx(expected, rel=1e-5)


def test_paper_known_answer_two_pixels_apart():
    mask = two_objects(1)  # object edges at columns 19 and 21: 2 px apart, one gap pixel
    w = border_weight_map(mask, [2], w0=10.0, sigma=5.0, class_weights={0: 1.0, 2: 1.0})
    assert w[20, 20] == pytest.approx(1.0 + 10.0 * math.exp(-4 / 50), rel=1e-6)


def test_far_from_objects_weight_is_class_weight():
    mask = np.zeros((200, 200), np.uint8)
    mask[10:30, 10:30] = 2
    mask[10:30, 32:50] = 2
    mask[150:, :] = 1
    weights = {0: 0.7, 1: 1.3, 2: 2.0}
    w = border_weight_map(mask, [2], w0=10.0, sigma=5.0, class_weights=weights)
    assert w[100, 150] == pytest.approx(0.7)  # far background
    assert w[180, 100] == pytest.approx(1.3)
    assert w[20, 20] == pytest.approx(2.0)  # inside an object: no border term
    assert w[20, 31] > 0.7 + 5.0


def test_single_object_has_no_border_term():
    mask = np.zeros((50, 50), np.uint8)
    mask[10:20, 10:20] = 2
    w = border_weight_map(mask, [2], w0=10.0, sigma=5.0, class_weights={0: 1.0, 2: 1.0})
    assert np.array_equal(np.unique(w), [1.0])


def test_unlabelled_pixels_weight_zero_and_inverse_frequency_mean_one():
    mask = np.zeros((20, 20), np.uint8)
    mask[:5] = 1
    mask[-2:] = 255
    w = border_weight_map(mask, [], w0=10.0)
    assert (w[-2:] == 0).all()
    assert w[mask != 255].mean() == pytest.approx(1.0)
    assert w[0, 0] / w[10, 0] == pytest.approx((13 * 20) / (5 * 20))


def test_class_frequency_weights():
    assert class_frequency_weights([30, 10, 0]) == {0: 40 / 60, 1: 40 / 20}
