"""io/ownership.py: ownership that a user's file cannot imitate (issue 28, class 2): typed fields at fixed places."""

from __future__ import annotations

import json

import pytest

from histoseg.io.ownership import has_record, is_owned_json

SPEC = {"histoseg_corrections": {"predicted": str, "corrected": str, "tolerance": float}, "features": list}
OURS = {
    "histoseg_corrections": {"predicted": "a.geojson", "corrected": "b.geojson", "tolerance": 0.5},
    "features": [],
}


@pytest.mark.parametrize(
    "imitation",
    [
        ["histoseg_corrections"],  # the marker as a list item
        "histoseg_corrections",  # a JSON string
        "my notes on histoseg_corrections",
        {"note": "histoseg_corrections", "features": []},  # the marker as a value
        {"histoseg_corrections": "yes", "features": []},  # the key, but not a record
        {"histoseg_corrections": ["predicted", "corrected", "tolerance"], "features": []},
        {"histoseg_corrections": {"predicted": "a", "corrected": "b", "tolerance": True}, "features": []},
        {"histoseg_corrections": {"predicted": "a", "corrected": "b", "tolerance": "0.5"}, "features": []},
        {"histoseg_corrections": {"predicted": "a", "corrected": "b"}, "features": []},
        {"histoseg_corrections": OURS["histoseg_corrections"]},  # no features list
        {"wrapper": OURS},  # the record, but not at its place
        [OURS],
    ],
)
def test_ownership_a_user_file_can_pass_never_for_an_imitation(imitation):
    assert not has_record(imitation, SPEC)


def test_ownership_a_user_file_can_pass_the_record_itself(tmp_path):
    assert has_record(OURS, SPEC)
    integer = {**OURS["histoseg_corrections"], "tolerance": 2}
    assert has_record({**OURS, "histoseg_corrections": integer}, SPEC)
    (tmp_path / "x.json").write_text(json.dumps(OURS))
    (tmp_path / "y.json").write_text('["histoseg_corrections"]')
    (tmp_path / "z.json").write_text("{not json")
    assert is_owned_json(tmp_path / "x.json", SPEC)
    assert not is_owned_json(tmp_path / "y.json", SPEC)
    assert not is_owned_json(tmp_path / "z.json", SPEC)
    assert not is_owned_json(tmp_path / "missing.json", SPEC)
