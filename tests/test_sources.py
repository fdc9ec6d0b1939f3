"""sources.py: slide-table sources and their checks."""

import pytest

from histoseg.errors import ConfigError


def test_slide_sources_are_checked():
    from histoseg.datamodules import SlideDataModule
    from histoseg.sources import SyntheticSlides

    with pytest.raises(ConfigError, match="data.synthetic.n_slides=2 and data.synthetic.n_val=2"):
        SyntheticSlides(n_slides=2, n_val=2)
    with pytest.raises(ConfigError, match="n_slides=1"):
        SyntheticSlides(n_slides=1, n_val=0)
    with pytest.raises(ConfigError, match="data.slides='t.csv' and data.synthetic are both set"):
        SlideDataModule(slides="t.csv", synthetic=SyntheticSlides()).slide_table()
    with pytest.raises(ConfigError, match="data.slides is not set"):
        SlideDataModule().slide_table()


def test_the_synthetic_label_kinds_are_registered_kinds():
    """``data.synthetic.label_kind`` names what the simulator draws, as a typed Literal for ``--help``; every
    one is a kind of the label registry (labels.grid.LABEL_GRIDS), so the table it writes always reads."""
    import typing

    from histoseg.labels.grid import label_kinds
    from histoseg.sources import LabelKind

    assert set(typing.get_args(LabelKind)) <= set(label_kinds())
