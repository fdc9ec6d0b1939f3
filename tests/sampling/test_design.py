"""Point designs: first rounds, nested later rounds, the record's round trip, cross-fitting folds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from histoseg.errors import ConfigError, LabelError
from histoseg.sampling.design import (
    add_round,
    crossfit_folds,
    is_design_file,
    new_design,
    read_design,
    write_design,
)
from histoseg.sampling.frame import frame_from_label_map

CLASSES = ["background", "interstitium", "tubules"]


def frame(strata: str = "none"):
    labels = np.ones((40, 60), np.uint8)
    labels[10:30, 10:30] = 2
    return frame_from_label_map(labels, (1.0, 1.0), (60, 40), CLASSES, 0, strata=strata, margin_cells=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["random", "stratified"])
def test_first_round_has_exactly_n_named_points_on_the_frame(kind):
    design = new_design("s.tif", kind, frame("class" if kind == "stratified" else "none"), n=20, seed=1)
    assert design.ids == [f"p{k:04d}" for k in range(1, 21)] and design.last_round == 1
    assert ((design.x >= 0) & (design.x < 60) & (design.y >= 0) & (design.y < 40)).all()
    if kind == "stratified":  # every stratum gets at least 2 points, and the sample knows its strata
        assert np.bincount(design.stratum).min() >= 2
        assert design.sample(design.ids).kind == "stratified"


def test_grid_rounds_nest_and_no_round_repeats_a_point():
    first = new_design("s.tif", "grid", frame(), n=24, seed=3)
    second = add_round(first, n=len(first), seed=4)
    assert second.ids[: len(first)] == first.ids  # the earlier points are kept, unchanged
    np.testing.assert_array_equal(second.x[: len(first)], first.x)
    new = second.round == 2
    assert new.sum() >= len(first)
    old = {(round(a, 2), round(b, 2)) for a, b in zip(first.x, first.y, strict=True)}
    assert old.isdisjoint((round(a, 2), round(b, 2)) for a, b in zip(second.x[new], second.y[new], strict=True))
    assert second.sample(second.ids).kind == "grid"  # the finer lattice indexes every node
    with pytest.raises(ConfigError, match="--n 0"):
        add_round(first, n=0, seed=5)


def test_the_record_round_trips_and_a_foreign_file_is_no_design(tmp_path):
    design = add_round(new_design("s.tif", "random", frame(), n=10, seed=1), n=5, seed=2)
    path = write_design(design, tmp_path / "s.design.json")
    assert is_design_file(path)
    back = read_design(path)
    assert back.ids == design.ids and back.last_round == 2
    np.testing.assert_array_equal(back.x, design.x)
    np.testing.assert_array_equal(back.round, design.round)
    user = tmp_path / "user.design.json"
    user.write_text(json.dumps({"note": "histoseg point design", "version": 1}), encoding="utf-8")
    assert not is_design_file(user)
    with pytest.raises(LabelError):
        read_design(user)


def test_crossfit_folds_are_a_balanced_deterministic_partition():
    design = new_design("s.tif", "stratified", frame("class"), n=21, seed=1)
    folds = crossfit_folds(design, 2, seed=0)
    assert sorted(folds) == sorted(design.ids) and set(folds.values()) == {0, 1}
    sizes = np.bincount(list(folds.values()))
    assert abs(int(sizes[0]) - int(sizes[1])) <= 1
    assert crossfit_folds(design, 2, seed=0) == folds
    with pytest.raises(ConfigError):
        crossfit_folds(design, 1)
