"""synthetic/layout.py: the output and geometry grids of a slide, known answers."""

import pytest

from histoseg.synthetic.layout import make_grid


@pytest.mark.parametrize(
    ("mpp", "g", "gshape"),
    [(0.25, 4, (25, 38)), (0.5, 2, (50, 75)), (1.0, 1, (100, 150)), (2.0, 1, (100, 150))],
)
def test_geometry_grid_is_about_one_micron(mpp, g, gshape):
    grid = make_grid(150, 100, mpp)
    assert grid.shape == (100, 150) and grid.g == g and grid.gshape == gshape
    assert grid.gum == pytest.approx(g * mpp) and grid.width_um == pytest.approx(150 * mpp)
    assert grid.height_um == pytest.approx(100 * mpp)
