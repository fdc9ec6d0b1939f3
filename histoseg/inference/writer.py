"""The label map on its way to disk: a uint8 band file, and the TIFF written from it while prediction runs.

- :class:`LabelSink`: the (H, W) uint8 label map in a raw file beside the output, written by
  the merger one finished band of rows at a time (``write_rows``), read back as an array-like
  (``sink[y0:y1, x0:x1]``) through ``os.pread`` with a cache of one block of rows. A read of rows
  not yet written *waits* for them, so a reader can follow the merger.
- :class:`BackgroundTiff`: a thread that writes the pyramidal label TIFF
  (:func:`histoseg.io.tiff.write_pyramid_tiff`, atomically) from the sink, started before the
  first tile is predicted: level-0 TIFF tiles are compressed as soon as their 256 rows are
  finished, overlapping with prediction; the reduced levels follow the last band. The band file
  is the bounded queue between the two: memory stays at one block of rows on each side, and
  the file is renamed into place only after the last row, so a failed prediction
  (:meth:`BackgroundTiff.cancel`) leaves no TIFF and no temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from histoseg.inference.predictor import Predictor
from histoseg.io.slide import Slide
from histoseg.report.areas import label_colormap

__all__ = ["BackgroundTiff", "LabelSink", "write_label_tiff"]

_BLOCK_ROWS = 1024


class _Cancelled(Exception):
    """The prediction stopped before the label map was complete."""


class LabelSink:
    """A (H, W) uint8 label map in a raw file, written by row blocks in order and read as an array-like.

    Args:
        path: The raw file (created or truncated; removed by the caller).
        height: Rows.
        width: Columns.
    """

    def __init__(self, path: Path, height: int, width: int) -> None:
        self.path = path
        self.shape = (height, width)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 2
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self._fd, height * width)
        self._cache: tuple[int, int, np.ndarray] | None = None
        self._done = 0  # rows [0, done) are written
        self._cancelled = False
        self._cond = threading.Condition()

    def write_rows(self, y0: int, rows: np.ndarray) -> None:
        """Write (n, W) uint8 rows starting at row ``y0`` (bands arrive top to bottom)."""
        data = np.ascontiguousarray(rows, dtype=np.uint8)
        view = data.data.cast("B")
        offset = y0 * self.shape[1]
        while view:
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written
        with self._cond:
            self._done = max(self._done, y0 + data.shape[0])
            self._cond.notify_all()

    def cancel(self) -> None:
        """Wake any reader waiting for rows; it raises instead of reading."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def _wait(self, y1: int) -> int:
        with self._cond:
            while self._done < y1 and not self._cancelled:
                self._cond.wait()
            if self._cancelled:
                raise _Cancelled
            return self._done

    def _rows(self, y0: int, y1: int) -> np.ndarray:
        if self._cache is not None and self._cache[0] <= y0 and y1 <= self._cache[1]:
            start = self._cache[0]
            return self._cache[2][y0 - start : y1 - start]
        done = self._wait(y1)
        # Cache a block of up to 1024 written rows: the tiles of a TIFF row hit it.
        block_end = min(self.shape[0], done, max(y1, y0 + _BLOCK_ROWS))
        size = (block_end - y0) * self.shape[1]
        data = os.pread(self._fd, size, y0 * self.shape[1])
        block = np.frombuffer(data, np.uint8).reshape(block_end - y0, self.shape[1])
        self._cache = (y0, block_end, block)
        return block[: y1 - y0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key, slice(None))
        rows, cols = key[0], key[1] if len(key) > 1 else slice(None)
        if isinstance(rows, int):
            rows = slice(rows, rows + 1 if rows != -1 else None)
            squeeze = True
        else:
            squeeze = False
        y0, y1, ystep = rows.indices(self.shape[0])
        block = self._rows(y0, max(y0, y1))[::ystep] if y1 > y0 else np.zeros((0, self.shape[1]), np.uint8)
        out = block[:, cols]
        return out[0] if squeeze else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self[:, :]
        return array.astype(dtype) if dtype is not None else array

    def close(self) -> None:
        """Close the file descriptor (the file itself is the caller's to remove)."""
        self._cache = None
        with contextlib.suppress(OSError):
            os.close(self._fd)


def write_label_tiff(path: Path, labels: Any, mpp: float, predictor: Predictor, slide: Slide) -> None:
    """Write a label map (array-like (H, W) uint8) as the pyramidal palette TIFF of a prediction."""
    from histoseg.io.tiff import describe_label_map, write_pyramid_tiff

    colormap = label_colormap(predictor.classes)
    description = json.loads(describe_label_map(predictor.classes, colormap))
    description.update(
        {
            "mpp": mpp,
            "slide": slide.path.name,
            "slide_mpp": slide.mpp,
            "slide_dimensions": list(slide.dimensions),
            "background_class": predictor.background_class,
            "checkpoint_sha256": predictor.checkpoint_sha256,
        }
    )
    write_pyramid_tiff(
        path,
        labels,
        mpp,
        tile=256,
        min_level_size=512,
        compression="deflate",
        interpolation="nearest",
        colormap=colormap,
        description=json.dumps(description),
    )


class BackgroundTiff:
    """Write the label TIFF from a :class:`LabelSink` in a thread that follows the merger.

    Args:
        path: Final TIFF path (written atomically by the thread).
        sink: The band file the merger writes.
        mpp: Label-map resolution.
        predictor: For the class names, colours and checkpoint hash in the description.
        slide: For the slide facts in the description.
    """

    def __init__(self, path: Path, sink: LabelSink, mpp: float, predictor: Predictor, slide: Slide) -> None:
        self.sink = sink
        self.seconds = 0.0
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(path, mpp, predictor, slide), name="histoseg-tiff", daemon=True
        )
        self._thread.start()

    def _run(self, path: Path, mpp: float, predictor: Predictor, slide: Slide) -> None:
        import time

        try:
            write_label_tiff(path, self.sink, mpp, predictor, slide)
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self._error = exc
        finally:
            self.seconds = time.thread_time()

    def result(self) -> None:
        """Wait for the TIFF (call after the last band is written); re-raise the thread's error."""
        self._thread.join()
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        """Stop the thread without a TIFF (its temporary file is removed by ``atomic_path``)."""
        self.sink.cancel()
        self._thread.join()
