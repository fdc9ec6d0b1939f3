"""inference/writer.py: the band file between the merger and the TIFF writer, read as an array-like."""

import threading

import numpy as np
import pytest

from histoseg.inference.writer import LabelSink, _Cancelled


def test_label_sink_reads_back_what_was_written(tmp_path):
    truth = np.arange(7 * 5, dtype=np.uint8).reshape(7, 5)
    sink = LabelSink(tmp_path / "band.raw", 7, 5)
    sink.write_rows(0, truth[:4])
    sink.write_rows(4, truth[4:])
    assert np.array_equal(np.asarray(sink), truth)
    assert np.array_equal(sink[2:6:2, 1:3], truth[2:6:2, 1:3])
    assert np.array_equal(sink[3], truth[3]) and np.array_equal(sink[-1], truth[-1])
    assert sink[5:5].shape == (0, 5)
    sink.close()
    assert (tmp_path / "band.raw").stat().st_size == 35


def test_a_reader_waits_for_rows_and_a_cancel_wakes_it(tmp_path):
    sink = LabelSink(tmp_path / "band.raw", 4, 2)
    got = {}

    def read():
        got["rows"] = sink[0:4].copy()

    reader = threading.Thread(target=read)
    reader.start()
    sink.write_rows(0, np.ones((2, 2), np.uint8))
    reader.join(timeout=0.2)
    assert reader.is_alive()  # rows 2-3 are not written yet: it waits
    sink.write_rows(2, np.full((2, 2), 3, np.uint8))
    reader.join(timeout=10)
    assert got["rows"].tolist() == [[1, 1], [1, 1], [3, 3], [3, 3]]

    waiting = LabelSink(tmp_path / "other.raw", 4, 2)
    errors = []
    thread = threading.Thread(
        target=lambda: errors.append(pytest.raises(_Cancelled, waiting.__getitem__, slice(0, 4)))
    )
    thread.start()
    waiting.cancel()
    thread.join(timeout=10)
    assert not thread.is_alive() and len(errors) == 1
