"""io/text.py: tables decoded as labs save them (UTF-8 with BOM, UTF-16, Windows-1252); CSV-injection guard."""

import logging

import pytest

from histoseg.errors import ConfigError
from histoseg.io.text import decode_table, read_table_text, spreadsheet_safe


def test_decode_known_encodings(caplog):
    assert decode_table("\ufeffslide,é\n".encode(), "t.csv") == ("slide,é\n", "UTF-8")
    assert decode_table("slide,é\n".encode("utf-16"), "t.csv") == ("slide,é\n", "UTF-16")
    with caplog.at_level(logging.WARNING, logger="histoseg"):
        assert decode_table(b"slide\ncaf\xe9\n", "t.csv") == ("slide\ncafé\n", "Windows-1252")
    assert "t.csv: not UTF-8 (byte 0xe9 on line 2); read as Windows-1252" in caplog.text
    with caplog.at_level(logging.WARNING, logger="histoseg"):
        assert decode_table(b"\x81", "t.csv") == ("\x81", "Latin-1")  # 0x81 is undefined in cp1252


def test_binary_and_unreadable_tables_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"x\.csv: a binary file .*; save it as 'CSV UTF-8'"):
        decode_table(b"PK\x03\x04rest", "x.csv")
    with pytest.raises(ConfigError, match="cannot read the table"):
        read_table_text(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("value", "safe"),
    [("=1+1", "'=1+1"), ("@SUM(A1)", "'@SUM(A1)"), ("-0.25", "-0.25"), (-0.25, -0.25), ("a=b", "a=b"),
     ("+1e-5", "+1e-5"), ("\t1", "'\t1"), ("-x", "'-x")],
)  # fmt: skip
def test_spreadsheet_safe_known_answers(value, safe):
    assert spreadsheet_safe(value) == safe
