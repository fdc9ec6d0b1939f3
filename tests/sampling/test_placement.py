"""Point placement: grids on the frame, nested refinement, uniform and stratified points."""

from __future__ import annotations

import numpy as np

from histoseg.sampling.frame import OUTSIDE, CountingFrame
from histoseg.sampling.placement import (
    Lattice,
    lattice_points,
    random_points,
    refine,
    square_lattice,
    stratified_points,
)


def whole(width: int = 100, height: int = 100, cell: float = 10.0) -> CountingFrame:
    rows, cols = int(np.ceil(height / cell)), int(np.ceil(width / cell))
    return CountingFrame(np.zeros((rows, cols), np.uint8), (cell, cell), (width, height), ("tissue",))


def test_lattice_nodes_on_the_frame_with_their_grid_indices():
    frame = CountingFrame(np.array([[0, OUTSIDE], [0, 0]], np.uint8), (50, 50), (100, 100), ("t",))
    x, y, index = lattice_points(frame, Lattice((10.0, 20.0), (40.0, 40.0)))
    # nodes at x = 10, 50, 90 and y = 20, 60; (50, 20) and (90, 20) lie in the cell outside the frame
    assert x.tolist() == [10.0, 10.0, 50.0, 90.0]
    assert y.tolist() == [20.0, 60.0, 60.0, 60.0]
    assert index.tolist() == [[0, 0], [0, 1], [1, 1], [2, 1]]


def test_a_square_lattice_on_a_whole_number_of_cells_has_exactly_n_nodes_whatever_the_offset():
    frame = whole()
    rng = np.random.default_rng(0)
    for _ in range(20):
        lattice = square_lattice(frame, 25, rng)
        assert lattice.step == (20.0, 20.0)
        assert 0 <= lattice.origin[0] < 20 and 0 <= lattice.origin[1] < 20
        assert len(lattice_points(frame, lattice)[0]) == 25


def test_refinement_keeps_every_node_and_halves_one_axis_at_a_time():
    frame = whole()
    lattice = Lattice((3.0, 7.0), (20.0, 20.0))
    old = set(zip(*lattice_points(frame, lattice)[:2], strict=True))
    finer = refine(lattice)
    assert finer.step == (10.0, 20.0)
    assert refine(finer).step == (10.0, 10.0)
    new = set(zip(*lattice_points(frame, finer)[:2], strict=True))
    assert old <= new and len(new) == 2 * len(old)


def test_random_points_are_uniform_over_the_area_and_never_repeat():
    # Two cells: the left one 10 x 10 inside the slide, the right one cut to 10 x 5 by the slide edge.
    frame = CountingFrame(np.zeros((1, 2), np.uint8), (10, 10), (15, 10), ("t",))
    rng = np.random.default_rng(1)
    taken: set[tuple[float, float]] = set()
    x, y = random_points(frame, 3000, rng, taken)
    assert len(taken) == 3000 and len(set(zip(x.tolist(), y.tolist(), strict=True))) == 3000
    assert ((x >= 0) & (x < 15) & (y >= 0) & (y < 10)).all()
    assert abs(np.mean(x >= 10) - 1 / 3) < 0.03  # the cut cell holds a third of the area
    more_x, more_y = random_points(frame, 100, rng, taken)
    assert not set(zip(more_x.tolist(), more_y.tolist(), strict=True)) & set(zip(x.tolist(), y.tolist(), strict=True))


def test_stratified_points_fall_in_their_stratum():
    cells = np.array([[0, 1, 1], [2, 2, OUTSIDE]], np.uint8)
    frame = CountingFrame(cells, (10, 10), (30, 20), ("a", "b", "c"))
    x, y, stratum = stratified_points(frame, np.array([3, 5, 2]), np.random.default_rng(2))
    assert np.bincount(stratum).tolist() == [3, 5, 2]
    assert np.array_equal(frame.locate(x, y), stratum)
