"""labels/superpixels.py: scribbles grown to the SLIC superpixels they alone touch, known halves."""

from __future__ import annotations

import numpy as np
import pytest

from histoseg.errors import ConfigError


def test_grow_to_superpixels_known_halves():
    """Two flat colour halves, two superpixels: a stroke labels its half, never the other one."""
    from histoseg.labels.superpixels import grow_to_superpixels

    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :40] = (200, 60, 160)  # PAS magenta
    image[:, 40:] = (240, 240, 240)  # glass
    labels = np.full((40, 80), 255, np.uint8)
    labels[18:21, 5:15] = 2
    grown = grow_to_superpixels(labels, image, segment_px=40)
    expected = np.full((40, 80), 255, np.uint8)
    expected[:, :40] = 2
    assert np.array_equal(grown, expected)
    # a second class in the other half grows there; both classes in one half: it stays as drawn
    labels[30, 60] = 4
    expected[:, 40:] = 4
    assert np.array_equal(grow_to_superpixels(labels, image, segment_px=40), expected)
    labels[5, 35] = 1
    conflict = grow_to_superpixels(labels, image, segment_px=40)
    assert np.array_equal(conflict[:, :40], labels[:, :40]) and (conflict[:, 40:] == 4).all()
    # nothing labelled: nothing grows; bad sizes are errors
    empty = np.full((40, 80), 255, np.uint8)
    assert np.array_equal(grow_to_superpixels(empty, image, segment_px=10), empty)
    with pytest.raises(ConfigError, match="superpixel size"):
        grow_to_superpixels(labels, image, segment_px=1)


def test_grow_to_superpixels_only_named_classes_grow():
    from histoseg.labels.superpixels import grow_to_superpixels

    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :40] = (200, 60, 160)
    image[:, 40:] = (240, 240, 240)
    labels = np.full((40, 80), 255, np.uint8)
    labels[18:21, 5:15] = 1  # interstitium: does not grow
    labels[30, 60] = 2  # tubules: grows
    grown = grow_to_superpixels(labels, image, segment_px=40, classes=iter([2, 3]))
    assert np.array_equal(grown[:, :40], labels[:, :40]) and (grown[:, 40:] == 2).all()
