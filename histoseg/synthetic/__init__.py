"""Seeded generator of synthetic PAS-stained kidney cortex slides with exact labels.

This package owns histoseg's embedded default dataset: pyramidal RGB slides that look
like periodic acid-Schiff (PAS) stained kidney cortex, each with a label mask that is
the exact truth of what was painted (class indices of :data:`histoseg.KIDNEY_CLASSES`:
0 background = glass, 1 interstitium, 2 tubules, 3 glomeruli, 4 other), so areas are
known to the pixel.

What is painted (sizes in microns, so the look survives a change of ``mpp``):

- an irregular tissue outline on glass, with a strip of renal capsule on one side;
- tubules: a dense packing (a Voronoi partition of jittered hexagonal sites, some
  neighbouring cells merged into elongated profiles) of epithelial rings with a thin
  magenta basement membrane, a magenta PAS-positive brush border around a narrow
  lumen (proximal) or an open lumen (distal), and round blue-purple nuclei. Many
  neighbours touch with no interstitium between them, as in real cortex (the case
  the U-Net border weights of Ronneberger et al. 2015 are for);
- glomeruli: a lobulated capillary tuft (magenta matrix, pale capillary lumens, many
  nuclei) inside Bowman's capsule with a thin urinary space; the label covers both;
- interstitium: pale-pink fibrous strands with sparse elongated nuclei;
- other: arteries (thick muscular wall, elastic lamina, lumen), veins (thin wall, wide
  lumen) and the capsule strip.

Colours are made in optical density with a two-stain model (haematoxylin + PAS,
Beer-Lambert, as in Ruifrok & Johnston 2001 colour deconvolution), then blurred and
noised; :class:`StainParams` shifts hue, saturation, brightness and stain strength,
and :class:`TissueParams` holds "pathology" knobs (fibrosis: wider interstitium,
atrophic tubules, thick membranes, inflammatory cells) to simulate domain shift.

Geometry distance fields are computed at about 1 um per pixel and interpolated, so a
3072 x 2304 slide takes about 2.5 s of CPU (rendering and writing both TIFFs). The whole
slide is rendered in memory (peak about 110 bytes per pixel, 0.8 GB for 3072 x 2304),
hence the size limit :data:`MAX_PIXELS`.

Example:
    >>> from histoseg.synthetic import generate_dataset
    >>> slides = generate_dataset("data/synthetic", n_slides=2, seed=0)  # doctest: +SKIP
    >>> slides[0].split, slides[0].pixel_counts["glomeruli"]  # doctest: +SKIP
    ('train', 140941)

Command line: ``histoseg synthesize --out DIR [--n N] [--seed S] [--width W --height H
--mpp M] [--fibrosis F]`` (or ``python -m histoseg.synthetic`` with the same options).

Stages, one module each, called in this order by :func:`render_slide` (:mod:`.render`):
:mod:`.layout` (grids, tissue outline and capsule side, placed glomeruli and vessels),
:mod:`.cells` (the packed tubule cells), :mod:`.canvas` (the output-resolution arrays),
:mod:`.interstitium`, :mod:`.tubules`, :mod:`.capsule`, :mod:`.glomeruli`, :mod:`.vessels`,
:mod:`.nuclei` (collected by every stage, drawn at once) and :mod:`.compose` (staining and
compositing); :mod:`.fields` holds the resampling and noise helpers, :mod:`.params` the
parameters and their checks, :mod:`.dataset` the files and the cached datasets.

"""

from histoseg.synthetic.command import main
from histoseg.synthetic.dataset import SyntheticSlide, generate_dataset, generate_slide
from histoseg.synthetic.params import GENERATOR_VERSION, KIDNEY_COLORS, MAX_PIXELS, StainParams, TissueParams
from histoseg.synthetic.render import RenderedSlide, render_slide

__all__ = [
    "GENERATOR_VERSION",
    "KIDNEY_COLORS",
    "MAX_PIXELS",
    "RenderedSlide",
    "StainParams",
    "SyntheticSlide",
    "TissueParams",
    "generate_dataset",
    "generate_slide",
    "main",
    "render_slide",
]
