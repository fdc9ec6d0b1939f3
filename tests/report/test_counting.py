"""Counted points matched to their design: by name, by position, and the errors a lab can make."""

from __future__ import annotations

import numpy as np
import pytest

from histoseg.errors import LabelError
from histoseg.labels.counted_points import write_counted_points
from histoseg.report.counting import design_path, load_counted_points, points_files, points_key
from histoseg.sampling.design import add_round, new_design, write_design
from histoseg.sampling.frame import frame_from_label_map

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]


@pytest.fixture
def design(tmp_path):
    labels = np.ones((40, 60), np.uint8)
    frame = frame_from_label_map(labels, (1.0, 1.0), (60, 40), CLASSES, 0, strata="none", margin_cells=0)
    made = new_design("s.tif", "random", frame, n=6, seed=0)
    write_design(made, design_path(tmp_path, "s"))
    return made


def write_csv(path, ids, x, y, classes):
    lines = ["id,x,y,class"] + [f"{i},{float(a)!r},{float(b)!r},{c}" for i, a, b, c in zip(ids, x, y, classes, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_points_are_found_by_name_and_by_position(tmp_path, design):
    names = ["interstitium", "tubules", "glomeruli", "interstitium", "other", "background"]
    # The first three by name, the last three without names (matched by position).
    write_csv(tmp_path / "s.points.csv", design.ids[:3] + ["", "", ""], design.x, design.y, names)
    counted = load_counted_points(tmp_path, "s", CLASSES, (60, 40))
    assert counted is not None and counted.ids == design.ids and counted.rounds == 1 and counted.pending == 0
    assert counted.label.tolist() == [1, 2, 3, 1, 4, 0]
    assert counted.design_name == "random"


def test_a_moved_point_and_two_classes_for_one_point_are_errors(tmp_path, design):
    x = design.x.copy()
    x[2] += 5
    write_csv(tmp_path / "s.points.csv", design.ids, x, design.y, ["tubules"] * 6)
    with pytest.raises(LabelError, match=f"point {design.ids[2]} is at .* but was placed at"):
        load_counted_points(tmp_path, "s", CLASSES, (60, 40))
    write_csv(tmp_path / "s.points.csv", design.ids, design.x, design.y, ["tubules"] * 6)
    write_counted_points(tmp_path / "s.points.geojson", design.ids, design.x, design.y, CLASSES)
    assert load_counted_points(tmp_path, "s", CLASSES).label.tolist() == [2] * 6  # unclassified: no conflict
    write_csv(tmp_path / "s.points.geojson.csv", [], [], [], [])  # not a points file name: ignored
    other = tmp_path / "s.points.round1.csv"
    write_csv(other, design.ids[:1], design.x[:1], design.y[:1], ["glomeruli"])
    with pytest.raises(LabelError, match="is 'glomeruli' here but 'tubules'"):
        load_counted_points(tmp_path, "s", CLASSES)


def test_only_complete_rounds_are_used_and_the_key_follows_the_files(tmp_path, design):
    write_csv(tmp_path / "s.points.csv", design.ids, design.x, design.y, ["interstitium"] * 6)
    key = points_key(tmp_path, "s")
    assert sorted(key) == ["s.design.json", "s.points.csv"]
    second = add_round(design, n=4, seed=1)
    write_design(second, design_path(tmp_path, "s"))
    new = second.round == 2
    ids = [i for i, r in zip(second.ids, second.round, strict=True) if r == 2]
    write_csv(tmp_path / "s.points.round2.csv", ids, second.x[new], second.y[new], ["tubules", "", "", ""])
    counted = load_counted_points(tmp_path, "s", CLASSES)
    assert (len(counted.ids), counted.rounds, counted.pending) == (6, 1, 3)
    assert [p.name for p in points_files(tmp_path, "s")] == ["s.points.csv", "s.points.round2.csv"]
    assert points_key(tmp_path, "s") != key
    write_csv(tmp_path / "s.points.round2.csv", ids, second.x[new], second.y[new], ["tubules"] * 4)
    counted = load_counted_points(tmp_path, "s", CLASSES)
    assert (len(counted.ids), counted.rounds, counted.pending) == (10, 2, 0)


def test_points_without_a_design_are_random_points_and_a_design_for_another_slide_is_refused(tmp_path, design):
    write_csv(tmp_path / "s.points.csv", design.ids, design.x, design.y, ["interstitium"] * 6)
    with pytest.raises(LabelError, match="made for a slide of 60 x 40 px"):
        load_counted_points(tmp_path, "s", CLASSES, (61, 40))
    design_path(tmp_path, "s").unlink()
    counted = load_counted_points(tmp_path, "s", CLASSES, (60, 40))
    assert counted.design is None and counted.design_name == "none" and counted.sample().kind == "random"
    assert load_counted_points(tmp_path, "t", CLASSES) is None


def test_messages_that_mislead_points_files_matching_no_slide_are_named(capsys, tmp_path):
    """Issue 28, class 8: a points file whose name differs only in case from its slide, or that names a
    slide not in --slides, was ignored without a word; each now gets one warning line naming it."""
    from tests.conftest import make_labelled_slide
    from tests.reliability.helpers import run, tiny_checkpoint

    slides = tmp_path / "slides"
    slides.mkdir()
    for i in range(2):
        make_labelled_slide(slides, f"s{i}", seed=i)
        (slides / f"s{i}.png").unlink()
    points = tmp_path / "points"
    points.mkdir()
    for name in ("S0.points.csv", "s9.points.geojson", "s9.design.json", "notes.txt"):
        (points / name).write_text("x,y,class\n")
    ckpt = tiny_checkpoint(tmp_path / "m.ckpt")
    status, _, err = run(
        capsys, "quantify", "--ckpt_path", ckpt, "--slides", slides, "--out", tmp_path / "out",
        "--points", points, "--no_progress",
    )
    assert status == 0, err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 3, err
    assert f"warning: {points / 'S0.points.csv'}: differs only in case from the slide s0.tif" in warnings[0]
    assert "rename it s0.points.csv" in warnings[0]
    assert warnings[1].startswith(f"warning: {points / 's9.design.json'}: names no slide of --slides")
    assert warnings[2].startswith(f"warning: {points / 's9.points.geojson'}: names no slide of --slides")
    assert "notes.txt" not in err
