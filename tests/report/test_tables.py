"""CSV injection (issue 28): report.csv text cells are never spreadsheet formulas; numbers stay numbers."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from histoseg.report.tables import REPORT_COLUMNS, write_report_csv


@pytest.mark.parametrize(
    ("slide", "written"),
    [
        ('=HYPERLINK("http://x.invalid","click")', '\'=HYPERLINK("http://x.invalid","click")'),
        ("+1+1", "'+1+1"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("\t5", "'\t5"),
        ("-3", "-3"),  # a text that is a plain number is not a formula
        ("a=b.svs", "a=b.svs"),
        ("s1.svs", "s1.svs"),
    ],
)
def test_csv_injection_text_cells_are_neutralised(tmp_path, slide, written):
    row = {"slide": slide, "class": "tubules", "area_um2": -0.25, "pixels": np.int64(-3), "status": "ok"}
    write_report_csv(tmp_path / "report.csv", [row])
    with open(tmp_path / "report.csv", newline="", encoding="utf-8") as handle:
        (read,) = list(csv.DictReader(handle))
    assert list(read) == list(REPORT_COLUMNS)
    assert read["slide"] == written
    assert read["area_um2"] == "-0.25" and read["pixels"] == "-3"  # numbers stay numbers
    assert read["class"] == "tubules" and read["status"] == "ok"
