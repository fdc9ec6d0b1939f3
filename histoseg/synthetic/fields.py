"""Field helpers of the synthetic generator: resampling between grids, smooth noise, point grids, outlines.

The geometry of a slide is computed on a coarse grid of about 1 um per pixel (an integer
factor ``g`` of the output grid) and resampled to the output grid with these helpers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi


def resize_bilinear(a: np.ndarray, shape: tuple[int, int], factor: float) -> np.ndarray:
    """Bilinearly resample a 2-D field by ``factor`` (output pixel size = input pixel size / factor).

    Pixel centres are aligned: output pixel ``y`` samples input coordinate
    ``(y + 0.5) / factor - 0.5`` (edges clamped); the result has exactly ``shape``.
    Integer factors use strided slicing only (fast); other factors gather.

    Args:
        a: (h, w) field.
        shape: Output (H, W), about ``(h * factor, w * factor)``.
        factor: Upsampling factor (> 0).

    Returns:
        (H, W) float32.
    """
    a = np.asarray(a, dtype=np.float32)
    if float(factor).is_integer():
        g = int(factor)
        return upsample_axis(upsample_axis(a, shape[0], g, 0), shape[1], g, 1)

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out, dtype=np.float64) + 0.5) / factor - 0.5
        base = np.floor(pos)
        weight = (pos - base).astype(np.float32)
        i0 = np.clip(base.astype(np.intp), 0, n_in - 1)
        i1 = np.clip(base.astype(np.intp) + 1, 0, n_in - 1)
        return i0, i1, weight

    y0, y1, wy = axis(shape[0], a.shape[0])
    x0, x1, wx = axis(shape[1], a.shape[1])
    rows = a[y0] * (1 - wy)[:, None] + a[y1] * wy[:, None]
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


def upsample_axis(a: np.ndarray, n_out: int, g: int, axis: int) -> np.ndarray:
    """Linear upsampling by an integer factor ``g`` along one axis, centre-aligned, edge-clamped."""
    if g == 1:
        return a[:n_out] if axis == 0 else a[:, :n_out]
    n_in = a.shape[axis]
    if axis == 0:
        padded = np.concatenate([a[:1], a, a[-1:]], axis=0)  # padded[i + 1] = a[i]
        out = np.empty((n_in * g, a.shape[1]), np.float32)
    else:
        padded = np.concatenate([a[:, :1], a, a[:, -1:]], axis=1)
        out = np.empty((a.shape[0], n_in * g), np.float32)
    for phase in range(g):
        offset = (phase + 0.5) / g - 0.5  # output g * i + phase samples source position i + offset
        w = np.float32(abs(offset))
        if axis == 0:
            near = padded[:-2] if offset < 0 else padded[2:]
            out[phase::g] = padded[1:-1] * (1 - w) + near * w
        else:
            near = padded[:, :-2] if offset < 0 else padded[:, 2:]
            out[:, phase::g] = padded[:, 1:-1] * (1 - w) + near * w
    return out[:n_out] if axis == 0 else out[:, :n_out]


def resize_nearest(a: np.ndarray, shape: tuple[int, int], factor: int) -> np.ndarray:
    """Repeat each pixel of ``a`` ``factor`` x ``factor`` times, cropped to ``shape``."""
    if factor > 1:
        a = np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)
    return a[: shape[0], : shape[1]]


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with features about ``scale_px`` pixels wide, (H, W) float32."""
    if scale_px <= 4.0:
        field_ = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), scale_px / 2, truncate=3.0)
    else:
        factor = float(max(2, round(scale_px / 3.0)))  # features span ~3 coarse pixels: smooth
        coarse = (int(math.ceil(shape[0] / factor)) + 2, int(math.ceil(shape[1] / factor)) + 2)
        small = ndi.gaussian_filter(rng.standard_normal(coarse, dtype=np.float32), 1.5, mode="wrap")
        field_ = resize_bilinear(small, shape, factor)
    std = float(field_.std())
    return (field_ - float(field_.mean())) / (std if std > 0 else 1.0)


def upsampled_noise(
    rng: np.random.Generator, shape: tuple[int, int], gshape: tuple[int, int], g: int, scale_px: float
) -> np.ndarray:
    """Unit-variance noise made on the geometry grid (``scale_px`` geometry pixels) and upsampled by ``g``."""
    field_ = resize_bilinear(smooth_noise(rng, gshape, scale_px), shape, g)
    std = float(field_[::7, ::7].std())
    return field_ / np.float32(std if std > 0 else 1.0)


def hex_grid(
    rng: np.random.Generator, width_um: float, height_um: float, spacing: float, jitter: float
) -> np.ndarray:
    """Jittered hexagonal grid of points covering a rectangle (plus one spacing), (N, 2) (x, y) microns."""
    row_h = spacing * math.sqrt(3) / 2
    ys = np.arange(-spacing, height_um + spacing, row_h)
    xs = np.arange(-spacing, width_um + spacing, spacing)
    gx, gy = np.meshgrid(xs, ys)
    gx = gx + (np.arange(len(ys))[:, None] % 2) * spacing / 2
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    pts += rng.uniform(-jitter, jitter, pts.shape) * spacing
    return pts


def sample_at(fieldmap: np.ndarray, pts: np.ndarray, um_per_px: float) -> np.ndarray:
    """Values of a geometry-resolution field at points (x, y) in microns (nearest pixel)."""
    iy = np.clip((pts[:, 1] / um_per_px).astype(np.intp), 0, fieldmap.shape[0] - 1)
    ix = np.clip((pts[:, 0] / um_per_px).astype(np.intp), 0, fieldmap.shape[1] - 1)
    return fieldmap[iy, ix]


def harmonics(rng: np.random.Generator, kmin: int, kmax: int, amplitude: float) -> np.ndarray:
    """Random angular harmonics (k, amplitude, phase) rows for a wobbly outline."""
    ks = np.arange(kmin, kmax + 1, dtype=np.float32)
    amps = amplitude * rng.uniform(0.3, 1.0, len(ks)).astype(np.float32) / np.sqrt(ks / kmin)
    phases = rng.uniform(0, 2 * np.pi, len(ks)).astype(np.float32)
    return np.stack([ks, amps, phases], axis=1)


def wobble(theta: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Sum of the harmonics ``rows`` (from :func:`harmonics`) at polar angles ``theta``, same shape."""
    out = np.zeros_like(theta)
    for k, amp, phase in rows:
        out += amp * np.cos(k * theta + phase)
    return out
