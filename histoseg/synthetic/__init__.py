"""Synthetic kidney-like slides with exact labels: the package's runnable default data."""

from histoseg.synthetic.generator import (
    GENERATOR_VERSION,
    KIDNEY_COLORS,
    MAX_PIXELS,
    RenderedSlide,
    StainParams,
    SyntheticSlide,
    TissueParams,
    generate_dataset,
    generate_slide,
    main,
    render_slide,
)

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
