"""One synthetic slide rendered in memory: the pipeline of the generator's stages.

Layout of the cortex on the geometry grid (outline and capsule, glomeruli and vessels,
packed tubule cells, per-tubule properties), then painting on the output grid
(interstitium, tubules, nuclei of every compartment, capsule, glomeruli, vessels), then
staining and compositing. The stages draw from one random generator in this order; a
change of order or arithmetic changes pixels and must bump ``GENERATOR_VERSION``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from histoseg.synthetic.canvas import Canvas, Patch, new_canvas, open_patch
from histoseg.synthetic.capsule import paint_capsule
from histoseg.synthetic.cells import tubule_cells
from histoseg.synthetic.compose import compose
from histoseg.synthetic.glomeruli import paint_glomerulus
from histoseg.synthetic.interstitium import interstitial_nuclei, paint_interstitium
from histoseg.synthetic.layout import Structure, make_grid, place_structures, tissue_outline
from histoseg.synthetic.nuclei import Nuclei, paint_nuclei
from histoseg.synthetic.params import GENERATOR_VERSION, StainParams, TissueParams, check_params
from histoseg.synthetic.tubules import paint_tubules, tubular_nuclei, tubule_properties
from histoseg.synthetic.vessels import paint_artery, paint_vein


@dataclass
class RenderedSlide:
    """A slide rendered in memory (no files).

    Attributes:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) uint8 class indices of :data:`histoseg.KIDNEY_CLASSES`.
        tubule_instances: (H, W) int32 tubule instance ids (0 = not a tubule); two
            touching tubules have different ids.
        objects: Object counts: ``tubules``, ``glomeruli``, ``arteries``, ``veins``.
    """

    image: np.ndarray
    labels: np.ndarray
    tubule_instances: np.ndarray
    objects: dict[str, int]


def render_slide(
    *,
    seed: int,
    width: int = 3072,
    height: int = 2304,
    mpp: float = 0.5,
    stain: StainParams | None = None,
    tissue: TissueParams | None = None,
) -> RenderedSlide:
    """Paint one synthetic PAS kidney cortex slide in memory.

    Args:
        seed: Random seed; the same seed and parameters give identical arrays.
        width: Width in pixels.
        height: Height in pixels.
        mpp: Microns per pixel (sizes of structures are fixed in microns).
        stain: Colour parameters (default :class:`StainParams`).
        tissue: Architecture parameters (default :class:`TissueParams`).

    Returns:
        The RGB image (H, W, 3) uint8, labels (H, W) uint8 and tubule instances (H, W) int32.

    Raises:
        ConfigError: invalid size, mpp or parameters.
    """
    stain = stain or StainParams()
    tissue = tissue or TissueParams()
    check_params(width, height, mpp, stain, tissue)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), GENERATOR_VERSION]))
    fib = float(tissue.fibrosis)
    grid = make_grid(width, height, mpp)
    # layout of the cortex, geometry grid
    outline = tissue_outline(rng, grid, tissue)
    structures = place_structures(rng, grid, tissue, outline)
    cells = tubule_cells(rng, grid, tissue, outline, structures)
    tubules = tubule_properties(rng, cells, tissue)
    # painting, output grid
    canvas = new_canvas(rng, grid, outline, cells)
    paint_interstitium(canvas, fib)
    paint_tubules(canvas, grid, cells, tubules, fib)
    nuclei = Nuclei()
    tubular_nuclei(rng, grid, cells, tubules, nuclei)
    interstitial_nuclei(rng, grid, outline, cells, fib, nuclei)
    if tissue.capsule:
        paint_capsule(rng, canvas, grid, outline, cells.capsule_id, nuclei)
    counts = _paint_structures(rng, canvas, structures, fib, nuclei, mpp)
    paint_nuclei(nuclei.arrays(), canvas, grid)
    n_tub = int(np.count_nonzero(np.bincount(canvas.tubules.reshape(-1), minlength=cells.n_tub + 1)[1:]))
    # staining and compositing; the canvas's other full-size arrays are released first (peak memory)
    maps, labels, instances, stain_field = canvas.maps, canvas.labels, canvas.tubules, canvas.stain_field
    del canvas
    image = compose(rng, maps, labels, stain, mpp, stain_field)
    return RenderedSlide(
        image=image, labels=labels, tubule_instances=instances, objects={"tubules": n_tub, **counts}
    )


def _paint_structures(
    rng: np.random.Generator,
    canvas: Canvas,
    structures: list[Structure],
    fib: float,
    nuclei: Nuclei,
    mpp: float,
) -> dict[str, int]:
    """Paint the glomeruli and vessels over their patches, in placement order; counts of those painted."""
    painters: dict[str, tuple[str, Callable[[Patch], None]]] = {
        "glomerulus": ("glomeruli", lambda patch: paint_glomerulus(rng, patch, fib, nuclei)),
        "artery": ("arteries", lambda patch: paint_artery(rng, patch, nuclei)),
        "vein": ("veins", lambda patch: paint_vein(rng, patch, nuclei)),
    }
    counts = {"glomeruli": 0, "arteries": 0, "veins": 0}
    for obj in structures:
        patch = open_patch(canvas, obj, mpp)
        if patch is None:
            continue
        name, paint = painters[obj.kind]
        counts[name] += 1
        paint(patch)
    return counts
