"""synthetic/params.py: invalid generator parameters are one-line config errors."""

from __future__ import annotations

import pytest

from histoseg.errors import ConfigError
from histoseg.synthetic import (
    TissueParams,
    generate_dataset,
    render_slide,
)


def test_invalid_parameters_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="width"):
        render_slide(seed=0, width=10, height=10)
    with pytest.raises(ConfigError, match="fibrosis"):
        render_slide(seed=0, width=256, height=256, tissue=TissueParams(fibrosis=2.0))
    with pytest.raises(ConfigError, match="mpp"):
        render_slide(seed=0, width=256, height=256, mpp=0.0)
    with pytest.raises(ConfigError, match="n_slides"):
        generate_dataset("/nonexistent-never-created", n_slides=0)
