"""labels/table.py: the slide table read into records; one-line errors naming the column or the row."""

import pytest

from histoseg.errors import ConfigError
from histoseg.labels.table import read_slide_table


def test_read_slide_table(table, tmp_path):
    path, _ = table
    records = read_slide_table(path)
    assert [r.split for r in records] == ["val", "train", "train"]
    assert records[0].slide == (tmp_path / "s0.tif").resolve() and records[0].kind == "dense"
    bad = tmp_path / "bad.csv"
    bad.write_text("image,labels\na.tif,b.png\n")
    with pytest.raises(ConfigError, match="'slide' column"):
        read_slide_table(bad)
    bad.write_text("slide,split\na.tif,training\n")
    with pytest.raises(ConfigError, match=r"bad\.csv:2: split 'training'"):
        read_slide_table(bad)
