"""Tile mergers on the model's device: blended logits -> uint8 label rows, class counts, expected areas.

Both mergers take one tile's (C, T, T) float32 scores as a torch tensor on the model's device and
keep their band there (METHODS.md section 5 for the two schemes):

- :class:`GaussianMerger` (nnU-Net): a band of ``tile`` rows of Gaussian-weighted score sums,
  ``(C + 1) x tile x W`` float32 (W = label-map width). When no later tile can touch a row it is
  finished: ``argmax(sum / weight)`` as uint8, class counts and expected counts;
- :class:`CropMerger`: each tile writes the argmax of the pixels it owns into a uint8 strip of
  ``(tile - 2 margin) x W``.

Only the finished uint8 rows (for the label-map file) and the per-band counts come back to the
host; memory is bounded by one band, never by the slide's area.

Scores are logits (``probabilities=False``: the expected counts sum their softmax) or already
probabilities (test-time augmentation, ``probabilities=True``: the merged values are summed).
With test-time augmentation the mergers also keep, for each of the 8 views, the label of the
view alone at every pixel (from the tile whose Gaussian weight is largest there; in crop mode the
tile that owns the pixel), and count them per view: ``Stats.view_counts`` (8, 256).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

__all__ = ["CropMerger", "GaussianMerger", "Stats"]


class RowSink(Protocol):
    """Where finished label rows go (:class:`histoseg.inference.writer.LabelSink`)."""

    shape: tuple[int, int]

    def write_rows(self, y0: int, rows: np.ndarray) -> None: ...


class Stats:
    """Per-class argmax pixel counts and expected (probability-summed) pixel counts, on the device.

    Args:
        num_classes: C, the number of score channels.
        fill: Label of pixels no tile covers (background, or 255 without a background class).
        background: Class that uncovered pixels count as in the expected counts (None: none).
        device: Device of the scores.
        probabilities: Scores are probabilities (summed as they are) rather than logits (softmax).
        views: Number of TTA views whose per-view labels are counted (0 = no TTA).
    """

    def __init__(
        self,
        num_classes: int,
        fill: int,
        background: int | None,
        device: torch.device,
        *,
        probabilities: bool = False,
        views: int = 0,
    ) -> None:
        self.device = device
        self.fill = fill
        self.background = background
        self.probabilities = probabilities
        self.views = views
        self._wide = torch.float32 if device.type == "mps" else torch.float64
        self._counts = torch.zeros(256, dtype=torch.int64, device=device)
        self._expected = torch.zeros(num_classes, dtype=self._wide, device=device)
        self._view_counts = torch.zeros((views, 256), dtype=torch.int64, device=device)
        self._view_offsets = (torch.arange(views, device=device) * 256).view(views, 1, 1)
        self._filled = 0

    def add_scores(
        self, scores: torch.Tensor, covered: torch.Tensor | None = None, *, consume: bool = False
    ) -> torch.Tensor:
        """Argmax (uint8) of (C, ...) scores; adds their probabilities to the expected counts.

        Args:
            scores: (C, ...) float32 logits (or probabilities).
            covered: Bool mask of the shape of one score plane: only these pixels count in the
                expected counts; the scores of the others must be 0 (their returned labels are 0
                and meant to be overwritten).
            consume: The scores may be overwritten (a finished band): the softmax works in place.
        """
        labels, best = _argmax_and_max(scores)
        c = scores.shape[0]
        if self.probabilities:  # uncovered pixels hold 0 and add nothing
            flat = scores.reshape(c, -1, scores.shape[-1]) if scores.dim() > 2 else scores.unsqueeze(1)
            # float32 partial sums along the last axis (each at most its length), then wide.
            self._expected += flat.sum(dim=-1).sum(dim=1, dtype=self._wide)
            return labels
        # Softmax summed over pixels without writing probabilities: sum_px exp(s - max) / z, as one
        # exp pass and one batched matrix-vector product per row (float32 row sums, each at most
        # a row long, then wide; 3-4x faster than softmax then sum on CPU).
        shifted = scores.sub_(best) if consume else scores - best
        exps = shifted.exp_()
        inverse = exps.sum(dim=0).reciprocal_()
        if covered is not None:
            inverse.masked_fill_(~covered, 0.0)
        rows = exps if exps.dim() == 3 else exps.reshape(c, 1, -1)
        per_row = torch.matmul(rows.transpose(0, 1), inverse.reshape(rows.shape[1], rows.shape[2], 1))
        self._expected += per_row.sum(dim=0, dtype=self._wide).reshape(c)
        return labels

    def add_filled(self, pixels: int) -> None:
        """Account for pixels given the fill value without running the model."""
        self._filled += int(pixels)

    def add_labels(self, labels: torch.Tensor) -> None:
        """Count (n, W) uint8 labels."""
        self._counts += torch.bincount(labels.reshape(-1), minlength=256)  # uint8 counts as it is

    def add_view_labels(self, labels: torch.Tensor) -> None:
        """Count (views, n, W) uint8 per-view labels."""
        flat = (labels.long() + self._view_offsets).reshape(-1)
        self._view_counts += torch.bincount(flat, minlength=256 * self.views).view(self.views, 256)

    @property
    def counts(self) -> np.ndarray:
        """(256,) int64 argmax pixel counts per label value."""
        return self._counts.cpu().numpy()

    @property
    def expected(self) -> np.ndarray:
        """(C,) float64 expected pixel counts (uncovered pixels count as background)."""
        expected = self._expected.cpu().numpy().astype(np.float64)
        if self.background is not None:
            expected[self.background] += self._filled
        return expected

    @property
    def view_counts(self) -> np.ndarray:
        """(views, 256) int64 per-view argmax pixel counts."""
        return self._view_counts.cpu().numpy()


def _argmax_and_max(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(argmax as uint8, max)`` of (C, ...) scores over the class axis, equal to ``torch.argmax``.

    torch's argmax over a leading (strided) axis runs about 10-25x slower on CPU than a max over it
    followed by one comparison with the maximum: the label is the number of leading classes
    strictly below the maximum (a running product of ``score < max`` flags summed over the
    classes), so the first class reaching the maximum wins, as in ``torch.argmax``. A NaN score
    (which ``torch.argmax`` treats as the maximum) sends the whole block to ``torch.argmax``
    itself, so the labels are the same in every case.
    """
    best = torch.amax(scores, dim=0)
    c = scores.shape[0]
    if c < 2 or c > 255 or bool(torch.isnan(best.sum())):  # NaN check in one pass (also +inf, -inf)
        return torch.argmax(scores, dim=0).to(torch.uint8), best
    below = (scores[: c - 1] < best).view(torch.uint8)  # (C - 1, ...) 0/1
    run = below[0].clone()
    labels = run.clone()
    for k in range(1, c - 1):
        labels += run.mul_(below[k])
    return labels, best


class TileBox(Protocol):
    """A tile's placement (:class:`histoseg.inference.predict.Tile`)."""

    @property
    def x(self) -> int: ...  # noqa: D102
    @property
    def y(self) -> int: ...  # noqa: D102
    @property
    def own(self) -> tuple[int, int, int, int]: ...  # noqa: D102


class GaussianMerger:
    """Weighted-average merger over a ring of ``tile`` rows (nnU-Net Gaussian blending).

    Output row ``r`` of the band lives in ring row ``r % tile``: finishing rows frees their ring
    rows for the rows below, so the band never moves in memory (no copy per tile row).

    Args:
        sink: Receives finished uint8 rows.
        num_classes: C.
        tile: Tile side T in pixels.
        stats: Counts of the finished rows.
        weights: (T, T) float32 importance map (:func:`histoseg.inference.predict.gaussian_importance_map`).
    """

    def __init__(self, sink: RowSink, num_classes: int, tile: int, stats: Stats, weights: np.ndarray) -> None:
        device = stats.device
        self.sink = sink
        self.height, self.width = sink.shape
        self.tile = tile
        self.stats = stats
        self.weights = torch.from_numpy(np.ascontiguousarray(weights, np.float32)).to(device)
        self.acc = torch.zeros((num_classes, tile, self.width), dtype=torch.float32, device=device)
        self.wsum = torch.zeros((tile, self.width), dtype=torch.float32, device=device)
        views = stats.views
        self.view_labels = torch.full((views, tile, self.width), stats.fill, dtype=torch.uint8, device=device)
        self.view_weight = torch.zeros(
            (tile, self.width) if views else (0, 0), dtype=torch.float32, device=device
        )
        self.top = 0  # first unfinished output row

    def _pieces(self, y0: int, h: int) -> list[tuple[int, int, int]]:
        """``(ring row, offset, rows)`` runs holding output rows ``[y0, y0 + h)`` (at most two)."""
        start = y0 % self.tile
        first = min(h, self.tile - start)
        return [(start, 0, first)] + ([(0, first, h - first)] if h > first else [])

    def add(self, scores: torch.Tensor, tile: TileBox, view_labels: torch.Tensor | None = None) -> None:
        """Add one tile's (C, T, T) float32 scores (and its (views, T, T) uint8 per-view labels)."""
        if tile.y > self.top:
            self.flush(tile.y)
        x0, y0, x1, y1 = tile.own
        w = x1 - x0
        for r0, k, h in self._pieces(y0, y1 - y0):
            weights = self.weights[k : k + h, :w]
            self.acc[:, r0 : r0 + h, x0:x1].addcmul_(scores[:, k : k + h, :w], weights)
            self.wsum[r0 : r0 + h, x0:x1] += weights
            if view_labels is not None:
                best = self.view_weight[r0 : r0 + h, x0:x1]
                better = weights > best
                region = self.view_labels[:, r0 : r0 + h, x0:x1]
                region.copy_(torch.where(better, view_labels[:, k : k + h, :w], region))
                best.copy_(torch.where(better, weights, best))

    def flush(self, until: int) -> None:
        """Finish output rows ``[top, until)``: no later tile touches them."""
        until = min(until, self.height)
        while self.top < until:
            start, _, n = self._pieces(self.top, min(until - self.top, self.tile))[0]
            self._finish_rows(start, n)

    def _finish_rows(self, start: int, n: int) -> None:
        """Finish output rows ``[top, top + n)``, held in ring rows ``[start, start + n)``; clear them."""
        stats = self.stats
        wsum = self.wsum[start : start + n]
        acc = self.acc[:, start : start + n]
        if wsum.numel() and float(wsum.amin()) > 0:
            # Every pixel covered (a band within tissue, the usual case): one min instead of the
            # coverage mask, its column span and count below (about 30x cheaper per band).
            n_covered = n * self.width
            labels = stats.add_scores(acc.div_(wsum), None, consume=True)
        else:
            labels, n_covered = self._finish_partial(acc, wsum)
        stats.add_filled(n * self.width - n_covered)
        stats.add_labels(labels)
        if stats.views:
            stats.add_view_labels(torch.where(wsum > 0, self.view_labels[:, start : start + n], stats.fill))
            self.view_labels[:, start : start + n] = stats.fill
            self.view_weight[start : start + n] = 0.0
        self.sink.write_rows(self.top, labels.cpu().numpy())
        acc.zero_()
        wsum.zero_()
        self.top += n

    def _finish_partial(self, acc: torch.Tensor, wsum: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Labels of (C, n, W) summed scores and (n, W) weights where some weights are 0; covered pixels.

        Divides ``acc`` in place (the rows are finished).
        """
        stats = self.stats
        n = wsum.shape[0]
        covered = wsum > 0
        labels = torch.full((n, self.width), stats.fill, dtype=torch.uint8, device=stats.device)
        columns = torch.nonzero(covered.any(dim=0)).flatten()
        n_covered = 0
        if columns.numel():
            # Only the covered columns: glass bands cost nothing.
            c0, c1 = int(columns[0]), int(columns[-1]) + 1
            sub_cov = covered[:, c0:c1]
            n_covered = int(sub_cov.sum())
            full = n_covered == sub_cov.numel()
            # In place: these ring rows are finished and cleared below. Uncovered pixels hold 0
            # (divided by 1); their labels are set to the fill and they are left out of the counts.
            block = acc[:, :, c0:c1].div_(
                wsum[:, c0:c1] if full else torch.where(sub_cov, wsum[:, c0:c1], 1.0)
            )
            sub = stats.add_scores(block, None if full else sub_cov, consume=True)
            labels[:, c0:c1] = sub if full else sub.masked_fill_(~sub_cov, stats.fill)
        return labels, n_covered

    def finish(self) -> None:
        """Flush every remaining row."""
        self.flush(self.height)


class CropMerger:
    """Centre-crop merger: each tile writes the argmax of the pixels it owns into a uint8 strip.

    Args:
        sink: Receives finished uint8 rows.
        step: Strip height = ``tile - 2 margin`` (the rows one tile row owns).
        stats: Counts of the finished rows.
    """

    def __init__(self, sink: RowSink, step: int, stats: Stats) -> None:
        self.sink = sink
        self.height, self.width = sink.shape
        self.step = step
        self.stats = stats
        self.strip = torch.full((step, self.width), stats.fill, dtype=torch.uint8, device=stats.device)
        self.view_strip = torch.full(
            (stats.views, step, self.width), stats.fill, dtype=torch.uint8, device=stats.device
        )
        self.top = 0
        self.covered = 0

    def add(self, scores: torch.Tensor, tile: TileBox, view_labels: torch.Tensor | None = None) -> None:
        """Add one tile's (C, T, T) float32 scores (and its (views, T, T) uint8 per-view labels)."""
        x0, y0, x1, y1 = tile.own
        while y0 > self.top:
            self.flush()
        ty, tx = tile.y, tile.x
        centre = scores[:, y0 - ty : y1 - ty, x0 - tx : x1 - tx]
        self.strip[y0 - self.top : y1 - self.top, x0:x1] = self.stats.add_scores(centre)
        if view_labels is not None:
            self.view_strip[:, y0 - self.top : y1 - self.top, x0:x1] = view_labels[
                :, y0 - ty : y1 - ty, x0 - tx : x1 - tx
            ]
        self.covered += (y1 - y0) * (x1 - x0)

    def flush(self) -> None:
        """Write the current strip and start the next one."""
        n = min(self.step, self.height - self.top)
        if n <= 0:
            return
        rows = self.strip[:n]
        self.stats.add_filled(n * self.width - self.covered)
        self.stats.add_labels(rows)
        if self.stats.views:
            self.stats.add_view_labels(self.view_strip[:, :n])
            self.view_strip.fill_(self.stats.fill)
        self.sink.write_rows(self.top, rows.cpu().numpy())
        self.strip.fill_(self.stats.fill)
        self.top += n
        self.covered = 0

    def finish(self) -> None:
        """Flush every remaining strip (including strips of skipped tiles)."""
        while self.top < self.height:
            self.flush()
