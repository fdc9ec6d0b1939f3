"""Would a fused merge kernel lift the pipeline ceiling? Eager argmax variants and a compiled band finish.

An experiment behind docs/performance.md, not a shipped code path. Two parts, one run:

1. **Argmax over the class axis** of a (5, 128, 4096) float32 band (one finished band of a
   4096-px-wide slide at tile 256), at 1 and 2 torch threads: the shipped running product of
   "below the maximum" flags (:func:`histoseg.inference.merge._argmax_and_max`) against
   ``torch.argmax``, ``torch.max``, a masked ``where`` chain, a permute + last-axis argmax and a
   ``cumprod`` of the flags; each checked equal to ``torch.argmax``.
2. **The pipeline ceiling with a compiled band finish**: ``bench_inference``'s constant-logit
   model on its slide A (``--size`` square), ``predict_slide`` three times with the shipped eager
   finish, then three times with ``GaussianMerger._finish_rows`` replaced by one
   ``torch.compile``-d function (inductor; divide by the weights, argmax, softmax sums in one
   kernel; class counts and the band file as shipped). Prints MP/s per run, the first compiled
   call's seconds (tracing and compiling, or loading inductor's on-disk cache).
3. **Identity**: on slide S with a seeded 1 x 1 convolution (varied labels), the label map and
   counts of the compiled finish against the eager one.

Usage::

    python benchmarks/bench_merge_kernels.py [--size 4096] [--cache-dir /tmp/histoseg-bench-inference]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_inference as bench  # noqa: E402

from histoseg.inference import merge  # noqa: E402


def _timed(fn, reps: int = 20) -> float:  # noqa: ANN001
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def argmax_variants() -> None:
    torch.manual_seed(0)
    c, n, w = 5, 128, 4096
    band = torch.randn(c, n, w) * 3
    reference = torch.argmax(band, 0).to(torch.uint8)

    def masked_chain() -> torch.Tensor:
        best = band.amax(0)
        labels = torch.full((n, w), c - 1, dtype=torch.uint8)
        for k in range(c - 2, -1, -1):
            labels.masked_fill_(band[k] == best, k)
        return labels

    def flags_cumprod() -> torch.Tensor:
        below = band[: c - 1] < band.amax(0)
        return below.cumprod(0, dtype=torch.uint8).sum(0, dtype=torch.uint8)

    variants = {
        "shipped running product": lambda: merge._argmax_and_max(band)[0],
        "torch.argmax(dim=0)": lambda: torch.argmax(band, 0).to(torch.uint8),
        "torch.max(dim=0)": lambda: torch.max(band, 0).indices.to(torch.uint8),
        "masked where chain": masked_chain,
        "permute + last-axis argmax": lambda: band.permute(1, 2, 0).contiguous().argmax(-1).to(torch.uint8),
        "cumprod of the flags": flags_cumprod,
    }
    threads = torch.get_num_threads()
    print(f"1. argmax over the class axis of a {c} x {n} x {w} float32 band (ms per band)")
    for count in sorted({1, threads}):
        torch.set_num_threads(count)
        for name, fn in variants.items():
            same = torch.equal(fn(), reference)
            print(
                f"   {count} thread{'s' if count > 1 else ' '}  {name:28s} {1e3 * _timed(fn):7.2f} ms  equal: {same}"
            )
    torch.set_num_threads(threads)


def fused_finish(acc: torch.Tensor, wsum: torch.Tensor, fill: int) -> tuple[torch.Tensor, ...]:
    """One band: labels (uint8), per-row expected sums (C, n), covered pixels, a finiteness probe."""
    covered = wsum > 0
    block = acc / torch.where(covered, wsum, 1.0)
    best = block.amax(0)
    labels = torch.where(covered, block.argmax(0), fill).to(torch.uint8)
    exps = (block - best).exp()
    inverse = torch.where(covered, exps.sum(0).reciprocal(), 0.0)
    return labels, (exps * inverse).sum(-1), covered.sum(), best.sum()


def compiled_finish_rows():  # noqa: ANN201
    """A drop-in ``GaussianMerger._finish_rows`` built on the compiled :func:`fused_finish`."""
    compiled = torch.compile(fused_finish, dynamic=True, fullgraph=True)
    eager = merge.GaussianMerger._finish_rows
    first: dict[str, float] = {}

    def finish_rows(self, start: int, n: int) -> None:  # noqa: ANN001
        stats = self.stats
        wsum, acc = self.wsum[start : start + n], self.acc[:, start : start + n]
        clock = time.perf_counter()
        labels, per_row, covered, probe = compiled(acc, wsum, stats.fill)
        first.setdefault("seconds", time.perf_counter() - clock)
        if not bool(torch.isfinite(probe)) or stats.views or stats.probabilities:
            eager(self, start, n)  # NaN/inf scores, TTA: the shipped path
            return
        stats._expected += per_row.sum(dim=1, dtype=stats._wide)
        stats.add_filled(n * self.width - int(covered))
        stats.add_labels(labels)
        self.sink.write_rows(self.top, labels.cpu().numpy())
        acc.zero_()
        wsum.zero_()
        self.top += n

    return finish_rows, first


def ceiling(slide: Path, out: Path) -> None:
    from histoseg.inference.options import InferenceOptions
    from histoseg.inference.predict import predict_slide
    from histoseg.inference.predictor import Predictor

    bench._warm_imports()
    predictor = Predictor(
        bench.constant_model(), bench.CLASSES, mpp=bench.MPP, tile_size=256, margin=32, background_class=0
    )
    options = InferenceOptions(
        tile_size=256, overlap=0.5, blend="gaussian", batch_size=8, precision="32", workers=0
    )
    print(f"\n2. pipeline ceiling on {slide.name}, constant-logit model, workers 0")
    eager = merge.GaussianMerger._finish_rows
    patched, first = compiled_finish_rows()
    for name, finish in (("eager finish (shipped)", eager), ("compiled finish", patched)):
        merge.GaussianMerger._finish_rows = finish
        rates = []
        try:
            for run in range(4):  # run 0 warms up (and, compiled, compiles)
                start = time.perf_counter()
                r = predict_slide(
                    slide, predictor, options, out_path=out / f"merge-{run}.tif", progress=False
                )
                seconds = time.perf_counter() - start
                (out / f"merge-{run}.tif").unlink()
                if run:
                    rates.append(r.shape[0] * r.shape[1] / 1e6 / seconds)
        finally:
            merge.GaussianMerger._finish_rows = eager
        extra = (
            f"; first compiled call {first['seconds']:.1f} s"
            if "seconds" in first and finish is patched
            else ""
        )
        print(f"   {name:24s} " + ", ".join(f"{v:.1f}" for v in rates) + f" MP/s (warm runs){extra}")


def identity(slide: Path, out: Path) -> None:
    """Eager against compiled finish with a model whose labels vary: a seeded 1 x 1 convolution."""
    from histoseg.inference.options import InferenceOptions
    from histoseg.inference.predict import predict_slide
    from histoseg.inference.predictor import Predictor

    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, len(bench.CLASSES), 1).eval()
    with torch.no_grad():  # strong, centred colour contrasts: every class wins somewhere
        net.weight.normal_(0.0, 30.0)
        net.bias.copy_(-0.7 * net.weight.sum(dim=(1, 2, 3)))
    predictor = Predictor(net, bench.CLASSES, mpp=bench.MPP, tile_size=256, margin=32, background_class=0)
    options = InferenceOptions(
        tile_size=256, overlap=0.5, blend="gaussian", batch_size=8, precision="32", workers=0
    )
    eager = merge.GaussianMerger._finish_rows
    patched, _ = compiled_finish_rows()
    found = []
    for finish in (eager, patched):
        merge.GaussianMerger._finish_rows = finish
        try:
            r = predict_slide(slide, predictor, options, out_path=out / "identity.tif", progress=False)
        finally:
            merge.GaussianMerger._finish_rows = eager
        found.append((bench_labels(out / "identity.tif"), r.counts, r.expected_counts))
        (out / "identity.tif").unlink()
    (la, ca, ea), (lb, cb, eb) = found
    print(
        f"\n3. {slide.name}, seeded 1 x 1 conv model (label shares {np.round(ca / ca.sum(), 3).tolist()}): "
        f"label maps identical eager vs compiled: {np.array_equal(la, lb)}; counts identical: "
        f"{np.array_equal(ca, cb)}; expected counts max relative difference "
        f"{float(np.max(np.abs(ea - eb) / np.maximum(ea, 1))):.1e}"
    )


def bench_labels(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=4096, help="side of bench_inference's slide A (label px)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/histoseg-bench-inference"))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    argmax_variants()
    slides = bench.make_slides(args.cache_dir, args.size)
    out = args.cache_dir / "out"
    out.mkdir(exist_ok=True)
    ceiling(slides["A"], out)
    identity(slides["S"], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
