"""synthetic/fields.py: resampling, noise and outline helpers of the generator, known answers."""

import math

import numpy as np

from histoseg.synthetic.fields import (
    hex_grid,
    resize_bilinear,
    resize_nearest,
    sample_at,
    smooth_noise,
    wobble,
)


def test_resize_bilinear_is_centre_aligned_and_edge_clamped():
    a = np.array([[0.0, 4.0]], np.float32)
    # factor 2: output x samples input (x + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped at the edges)
    assert resize_bilinear(a, (1, 4), 2)[0].tolist() == [0.0, 1.0, 3.0, 4.0]
    # the gathering path (non-integer factor) agrees with the strided one on the same positions
    ramp = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.allclose(
        resize_bilinear(ramp, (6, 8), 2.0), resize_bilinear(ramp, (6, 8), 2.0000001), atol=1e-4
    )
    assert resize_bilinear(ramp, (5, 7), 2).shape == (5, 7)  # exactly the shape asked for


def test_resize_nearest_and_sample_at():
    a = np.array([[1, 2], [3, 4]])
    assert resize_nearest(a, (3, 4), 2).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4]]
    pts = np.array([[0.5, 0.5], [3.9, 0.1], [1.0, 3.0], [-5.0, 99.0]])  # (x, y) microns, 2 um pixels
    assert sample_at(a, pts, 2.0).tolist() == [1, 2, 3, 3]  # nearest pixel (x 1 um is column 0), clamped


def test_smooth_noise_is_standardised_and_seeded():
    for scale in (2.0, 12.0):  # the direct and the coarse-and-upsample paths
        noise = smooth_noise(np.random.default_rng(1), (64, 48), scale)
        assert (
            noise.shape == (64, 48) and abs(float(noise.mean())) < 1e-5 and abs(float(noise.std()) - 1) < 1e-4
        )
        assert np.array_equal(noise, smooth_noise(np.random.default_rng(1), (64, 48), scale))


def test_hex_grid_rows_and_wobble():
    pts = hex_grid(np.random.default_rng(0), 10.0, 10.0, spacing=2.0, jitter=0.0)
    rows = np.unique(np.round(pts[:, 1], 6))
    assert np.allclose(np.diff(rows), 2.0 * math.sqrt(3) / 2)  # rows a hexagon's height apart
    first, second = (np.sort(pts[np.isclose(pts[:, 1], r), 0]) for r in rows[:2])
    assert np.allclose(second - first, 1.0)  # every other row shifted by half a spacing
    theta = np.array([0.0, math.pi / 2])
    assert np.allclose(
        wobble(theta, np.array([[2.0, 0.5, 0.0], [3.0, 1.0, math.pi / 2]])),
        [0.5 + 0.0, -0.5 + 1.0],  # 0.5 cos(2t) + cos(3t + pi/2)
    )
