"""The U-Net loss's weight map (Ronneberger, Fischer, Brox, MICCAI 2015): NumPy/SciPy label code.

The loss itself (:func:`histoseg.models.losses.weighted_cross_entropy`) is pure torch; the map is
computed per patch in the data pipeline (:mod:`histoseg.datasets`), in the DataLoader workers.

Ronneberger et al. weight every pixel's cross-entropy by

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

where ``w_c`` balances class frequencies, ``d1`` is the distance to the border of the nearest
object and ``d2`` to the second nearest, so that thin gaps between touching objects (here:
interstitium between touching tubules) get a large weight.

Choices made here (the paper leaves them open):

- **Objects** are the connected components (4-connectivity) of each class in ``object_classes``
  (kidney: tubules and glomeruli); semantic masks have no instances.
- **Border term** applies only on labelled pixels that are *not* in an object class (the
  "background between touching cells" of the paper: interstitium, glass, other), and only where
  at least two objects are within reach. With fewer than two objects it is zero.
- **Class weights** ``w_c``: ``class_weights=None`` means inverse class frequency over the
  labelled pixels of ``mask``, rescaled so that the mean of ``w_c`` over labelled pixels is 1
  (``w_c = n_labelled / (k * n_c)`` for the ``k`` classes present). Datamodules pass weights
  computed once over the whole training set instead, which are less noisy than per-patch ones.
- **Cut-off**: each object's distance transform is computed only inside its bounding box dilated
  by ``3 * sigma + 2`` pixels; beyond that ``exp(-(d1+d2)^2 / 2 sigma^2) < 1.2e-2`` at most and is
  taken as 0, which keeps the map cheap (docs/methods.md section 2).

Example:
    >>> import numpy as np
    >>> from histoseg.labels.weight_maps import border_weight_map
    >>> mask = np.zeros((9, 9), np.uint8); mask[2:7, 1:3] = 1; mask[2:7, 4:6] = 1  # objects 2 px apart
    >>> w = border_weight_map(mask, object_classes=[1], w0=10, sigma=5, class_weights={0: 1.0, 1: 1.0})
    >>> round(float(w[4, 3]), 3)  # gap pixel: d1 = d2 = 1 -> 1 + 10 * exp(-4 / 50)
    10.231
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from histoseg import IGNORE_INDEX

__all__ = ["border_weight_map", "class_frequency_weights"]


def class_frequency_weights(
    counts: Mapping[int, int] | Sequence[int], ignore_index: int = IGNORE_INDEX
) -> dict[int, float]:
    """Inverse-frequency class weights with mean 1 over the counted pixels.

    Args:
        counts: Pixel count per class index (mapping or sequence indexed by class).
        ignore_index: Class value that is never weighted.

    Returns:
        ``{class: n_total / (k * n_class)}`` for the ``k`` classes with a non-zero count.
    """
    items = counts.items() if isinstance(counts, Mapping) else enumerate(counts)
    present = {int(c): int(n) for c, n in items if int(n) > 0 and int(c) != ignore_index}
    if not present:
        return {}
    total = sum(present.values())
    k = len(present)
    return {c: total / (k * n) for c, n in present.items()}


def border_weight_map(
    mask: np.ndarray,
    object_classes: Sequence[int],
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: Mapping[int, float] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Per-pixel weight map of the U-Net loss (Ronneberger et al. 2015, eq. 2).

    Args:
        mask: (H, W) integer label mask; ``ignore_index`` marks unlabelled pixels.
        object_classes: Class indices whose connected components are the objects (kidney:
            tubules, glomeruli).
        w0: Amplitude of the border term (paper: 10).
        sigma: Width of the border term in **pixels at the mask's resolution** (paper: 5 px).
            Convert from microns with ``sigma_um / mpp``.
        class_weights: ``{class: w_c}``; None means inverse class frequency over the labelled
            pixels of ``mask`` with mean 1 (see module docstring). Classes missing from the
            mapping get weight 1.
        ignore_index: Unlabelled value; those pixels get weight 0.

    Returns:
        (H, W) float32 weights; 0 on unlabelled pixels.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    labelled = mask != ignore_index
    if class_weights is None:
        values, counts = np.unique(mask[labelled], return_counts=True)
        class_weights = class_frequency_weights(dict(zip(values.tolist(), counts.tolist(), strict=True)))
    lut = np.ones(256, dtype=np.float32)
    for cls, weight in class_weights.items():
        if 0 <= int(cls) < 256:
            lut[int(cls)] = float(weight)
    weights = lut[mask.astype(np.intp)] if mask.dtype != np.uint8 else lut[mask]
    weights = np.where(labelled, weights, 0.0).astype(np.float32)
    if w0 == 0 or sigma <= 0 or not object_classes:
        return weights

    is_object = np.isin(mask, np.asarray(list(object_classes)))
    structure = ndimage.generate_binary_structure(2, 1)
    components = np.zeros(mask.shape, dtype=np.int32)
    n_objects = 0
    for cls in object_classes:
        comp, n = ndimage.label(mask == cls, structure=structure)
        components[comp > 0] = comp[comp > 0] + n_objects
        n_objects += n
    if n_objects < 2:
        return weights

    h, w = mask.shape
    reach = int(np.ceil(3 * sigma)) + 2
    d1 = np.full(mask.shape, np.inf, dtype=np.float32)
    d2 = np.full(mask.shape, np.inf, dtype=np.float32)
    for index, slc in enumerate(ndimage.find_objects(components), start=1):
        if slc is None:
            continue
        y0 = max(slc[0].start - reach, 0)
        y1 = min(slc[0].stop + reach, h)
        x0 = max(slc[1].start - reach, 0)
        x1 = min(slc[1].stop + reach, w)
        inside = components[y0:y1, x0:x1] == index
        dist = ndimage.distance_transform_edt(~inside).astype(np.float32)
        dist[dist > reach] = np.inf
        b1 = d1[y0:y1, x0:x1]
        b2 = d2[y0:y1, x0:x1]
        closer = dist < b1
        np.copyto(b2, np.where(closer, b1, np.minimum(b2, dist)))
        np.copyto(b1, np.where(closer, dist, b1))
    target = labelled & ~is_object & np.isfinite(d2)
    total = d1[target] + d2[target]
    weights[target] += (w0 * np.exp(-(total**2) / (2.0 * sigma**2))).astype(np.float32)
    return weights
