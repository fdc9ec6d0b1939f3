"""io/tissue.py: HSV saturation/value and the thumbnail tissue mask, known answers."""

import numpy as np

from histoseg.io.tissue import saturation_value, tissue_mask, white_pixels


def test_saturation_value_known_answers():
    rgb = np.array([[[255, 0, 0], [128, 128, 128], [0, 0, 0], [200, 100, 50]]], np.uint8)
    sat, val = saturation_value(rgb)
    assert np.allclose(sat, [[1.0, 0.0, 0.0, 0.75]]) and np.allclose(val, [[1.0, 128 / 255, 0.0, 200 / 255]])
    assert sat.dtype == val.dtype == np.float32


def test_tissue_mask_is_the_stained_square_without_specks():
    thumb = np.full((40, 40, 3), 255, np.uint8)
    thumb[10:20, 12:24] = (230, 150, 190)  # PAS pink: saturation 0.35
    thumb[32:34, 32:34] = (230, 150, 190)  # a 4-pixel speck of dust
    mask = tissue_mask(thumb)
    expected = np.zeros((40, 40), bool)
    expected[10:20, 12:24] = True
    assert np.array_equal(mask, expected)
    assert not tissue_mask(np.full((40, 40, 3), 250, np.uint8)).any()  # blank glass: no tissue
    white = white_pixels(thumb, smooth=1)
    assert white.sum() == 40 * 40 - 120 - 4
