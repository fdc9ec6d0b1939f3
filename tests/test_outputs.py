"""outputs.py: the cohort report's ownership record; a user's report.json that only looks like histoseg's is not."""

from __future__ import annotations

import json

import pytest

from histoseg.outputs import REPORT_RECORD, is_ours


@pytest.mark.parametrize(
    "report",
    [
        {"histoseg_version": None, "definitions": {}, "slides": []},
        {"histoseg_version": "0.1", "slides": []},
        {"notes": ["histoseg_version", "slides"]},
        ["histoseg_version", "slides"],
    ],
)
def test_ownership_a_user_file_can_pass_cohort_report(tmp_path, report):
    """A user's report.json that only looks like histoseg's does not make the cohort names histoseg's."""
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert not is_ours(tmp_path / "report.csv", tmp_path)
    ours = {"histoseg_version": "0.1", "definitions": {}, "slides": []}
    (tmp_path / "report.json").write_text(json.dumps(ours))
    assert is_ours(tmp_path / "report.csv", tmp_path)
    assert set(REPORT_RECORD) == {"histoseg_version", "definitions", "slides"}
