"""synthetic/compose.py: the optical blur keeps the mean and has the variance it is asked for."""

import numpy as np
from scipy import ndimage

from histoseg.synthetic.compose import blur


def test_blur_known_answers():
    image = np.zeros((9, 9), np.float32)
    image[4, 4] = 1.0
    assert blur(image, 0.1) is image  # below 0.2 px: nothing to blur
    small = blur(image, 0.8)
    w = 0.8**2 / 2
    assert np.isclose(small[4, 4], (1 - 2 * w) ** 2) and np.isclose(small[4, 5], w * (1 - 2 * w))
    assert np.isclose(small.sum(), 1.0)  # mass kept
    yy, xx = np.mgrid[:9, :9]
    assert np.isclose((small * (xx - 4) ** 2).sum(), 0.8**2)  # the variance asked for
    big = blur(image, 1.5)
    assert np.allclose(big, ndimage.gaussian_filter(image, 1.5, truncate=3.0))
    flat = np.full((5, 6), 0.3, np.float32)
    assert np.allclose(blur(flat, 0.9), 0.3)  # replicated borders: a flat field stays flat
