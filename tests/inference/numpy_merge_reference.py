"""The host (NumPy) tile mergers of histoseg before the merge moved to the model's device (commit 234d7ee).

Kept verbatim (apart from this header and the imports) as the reference oracle of
``tests/inference/test_merge.py``: at fp32 the device merge must give byte-identical label maps.
"""

from __future__ import annotations

import numpy as np

from histoseg.inference.predict import Tile, gaussian_importance_map


class _RowSink:
    """An in-memory (H, W) uint8 label map with the sink interface."""

    def __init__(self, height: int, width: int) -> None:
        self.shape = (height, width)
        self.array = np.zeros((height, width), np.uint8)

    def write_rows(self, y0: int, rows: np.ndarray) -> None:
        self.array[y0 : y0 + len(rows)] = rows


class _Stats:
    """Per-class argmax pixel counts and expected (softmax-summed) pixel counts."""

    def __init__(self, num_classes: int, fill: int, background: int | None) -> None:
        self.counts = np.zeros(256, np.int64)
        self.expected = np.zeros(num_classes, np.float64)
        self.fill = fill
        self.background = background

    def add_logits(self, logits: np.ndarray) -> np.ndarray:
        """Argmax (uint8) of (C, ...) logits; adds their softmax to the expected counts."""
        labels = np.argmax(logits, axis=0).astype(np.uint8)
        shifted = logits - logits.max(axis=0, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=0, keepdims=True)
        self.expected += shifted.reshape(shifted.shape[0], -1).sum(axis=1, dtype=np.float64)
        return labels

    def add_filled(self, pixels: int) -> None:
        """Account for pixels given the fill value without running the model."""
        if self.background is not None:
            self.expected[self.background] += pixels

    def add_labels(self, labels: np.ndarray) -> None:
        self.counts += np.bincount(labels.ravel(), minlength=256)


class _GaussianMerger:
    """Weighted-average merger over a band of ``tile`` rows (nnU-Net Gaussian blending)."""

    def __init__(self, sink: _RowSink, num_classes: int, tile: int, stats: _Stats) -> None:
        self.sink = sink
        self.height, self.width = sink.shape
        self.tile = tile
        self.stats = stats
        self.weights = gaussian_importance_map(tile)
        self.acc = np.zeros((num_classes, tile, self.width), np.float32)
        self.wsum = np.zeros((tile, self.width), np.float32)
        self.top = 0  # output row of band row 0

    def add(self, logits: np.ndarray, tile: Tile) -> None:
        """Add one tile's (C, T, T) float32 logits."""
        if tile.y > self.top:
            self.flush(tile.y)
        x0, y0, x1, y1 = tile.own
        r0 = y0 - self.top
        h, w = y1 - y0, x1 - x0
        weights = self.weights[:h, :w]
        self.acc[:, r0 : r0 + h, x0:x1] += logits[:, :h, :w] * weights
        self.wsum[r0 : r0 + h, x0:x1] += weights

    def flush(self, until: int) -> None:
        """Finish output rows ``[top, until)``: no later tile touches them."""
        until = min(until, self.height)
        while self.top < until:
            self._flush_band(min(until - self.top, self.tile))

    def _flush_band(self, n: int) -> None:
        """Finish the first ``n <= tile`` rows of the band and shift the band down by ``n`` rows."""
        wsum = self.wsum[:n]
        covered = wsum > 0
        labels = np.full((n, self.width), self.stats.fill, np.uint8)
        if covered.any():
            # Only the covered columns: glass bands cost nothing.
            cols = np.flatnonzero(covered.any(axis=0))
            c0, c1 = int(cols[0]), int(cols[-1]) + 1
            block = self.acc[:, :n, c0:c1] / np.where(covered[:, c0:c1], wsum[:, c0:c1], 1.0)
            sub_cov = covered[:, c0:c1]
            if sub_cov.all():
                labels[:, c0:c1] = self.stats.add_logits(block)
            else:
                picked = block[:, sub_cov]  # (C, k)
                sub = labels[:, c0:c1]
                sub[sub_cov] = self.stats.add_logits(picked)
        self.stats.add_filled(int(n * self.width - np.count_nonzero(covered)))
        self.stats.add_labels(labels)
        self.sink.write_rows(self.top, labels)
        keep = self.tile - n
        if keep > 0:
            self.acc[:, :keep] = self.acc[:, n:]
            self.wsum[:keep] = self.wsum[n:]
        self.acc[:, max(keep, 0) :] = 0.0
        self.wsum[max(keep, 0) :] = 0.0
        self.top += n

    def finish(self) -> None:
        """Flush every remaining row."""
        self.flush(self.height)


class _CropMerger:
    """Centre-crop merger: each tile writes the argmax of the pixels it owns into a uint8 strip."""

    def __init__(self, sink: _RowSink, step: int, stats: _Stats) -> None:
        self.sink = sink
        self.height, self.width = sink.shape
        self.step = step
        self.stats = stats
        self.strip = np.full((step, self.width), stats.fill, np.uint8)
        self.top = 0
        self.covered = 0

    def add(self, logits: np.ndarray, tile: Tile) -> None:
        """Add one tile's (C, T, T) float32 logits."""
        x0, y0, x1, y1 = tile.own
        while y0 > self.top:
            self.flush()
        centre = logits[:, y0 - tile.y : y1 - tile.y, x0 - tile.x : x1 - tile.x]
        self.strip[y0 - self.top : y1 - self.top, x0:x1] = self.stats.add_logits(np.array(centre))
        self.covered += (y1 - y0) * (x1 - x0)

    def flush(self) -> None:
        """Write the current strip and start the next one."""
        n = min(self.step, self.height - self.top)
        if n <= 0:
            return
        rows = self.strip[:n]
        self.stats.add_filled(n * self.width - self.covered)
        self.stats.add_labels(rows)
        self.sink.write_rows(self.top, rows)
        self.strip.fill(self.stats.fill)
        self.top += n
        self.covered = 0

    def finish(self) -> None:
        """Flush every remaining strip (including strips of skipped tiles)."""
        while self.top < self.height:
            self.flush()
