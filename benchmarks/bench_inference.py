"""Where the time of slide inference goes: one run, one synthetic slide family, one model.

Slides (``histoseg.synthetic.generate_slide``, seed 0, generated at the model's
resolution, 1.0 um/px, JPEG pyramid; cached in ``--cache-dir``):

- ``S``: a generated ``size/2`` square slide (real tissue and glass) for the model arms;
- ``A``: S tiled 2 x 2 (``size`` square) for the pipeline ceiling;
- ``B``: S tiled 4 x 4 (4x the area of A) for the memory arm.

Arms, each in a fresh subprocess (so its peak RSS, ``ru_maxrss``, is its own):

1. **Pipeline ceiling** on A: a model that computes nothing (constant logits), at the precision
   and memory format ``--precision auto`` tries on this device (the input conversion depends on
   the format), ``quantify``'s default ``--workers`` (0: one background reader thread) and
   ``--workers N``, and at fp32 in the default format (``--precision 32``): megapixels of label
   map per second, and the main process's time split into waiting for tiles, the forward call,
   merging (blend, argmax, counts, band file) and waiting for the TIFF thread; plus reading
   alone (all tiles, no model) and writing alone (the label TIFF from memory).
2. **Default path** on S (``quantify``'s default ``--workers``), smp U-Net(resnet18) 5 classes,
   random weights, at fp32 (the reference: default memory format), fp32 + channels-last and
   bf16 autocast + channels-last; the row marked ``<- auto`` is what ``--precision auto`` tries
   on this device (:func:`histoseg.inference.forward.candidate`; its once-per-run check is not
   timed): end-to-end ``predict_slide`` (+ TIFF) divided by forward-only (``model(x)`` alone,
   same tiles, same batches, same precision and format). ``--repeats K`` alternates K
   end-to-end runs with K + 1 forward-only runs in the same process; each end-to-end run is
   divided by the mean of the forward-only runs just before and just after it, and the median
   of those K ratios is the figure (one run on a shared machine moves by up to 15 %).
3. **MONAI** ``sliding_window_inference`` on S (same model, fp32, the whole level in memory,
   roi = tile, overlap 0.5, gaussian, sigma 0.125, same batch) vs histoseg fp32: time, peak RSS.
4. **Peak RSS** of the default ceiling arm (default precision and workers) on A and on B (4x the area).
5. ``--device cuda``: arms 1-2 on the GPU plus the fraction of wall time the GPU is busy (CUDA
   events around each forward); skipped with the reason when no GPU is present.

Usage::

    python benchmarks/bench_inference.py                 # size 4096 (A = 4096^2 label px)
    python benchmarks/bench_inference.py --quick         # smoke run (< 20 s): tiny slides and net, in-process

On a shared machine, wall-clock figures move with the load (printed); CPU seconds of the arm
(its process and reader workers) move less.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]
MPP = 1.0


# -- slides -------------------------------------------------------------------------------------


def make_slides(folder: Path, size: int) -> dict[str, Path]:
    """S (generated, size/2), A (S 2 x 2) and B (S 4 x 4), cached by size."""
    from histoseg.io.slide import Slide
    from histoseg.io.tiff import write_pyramid_tiff
    from histoseg.synthetic import generate_slide

    folder.mkdir(parents=True, exist_ok=True)
    half = size // 2
    paths = {name: folder / f"{name}{size}.tif" for name in ("S", "A", "B")}
    if not paths["S"].exists():
        made = generate_slide(folder, f"gen{size}", seed=0, width=half, height=half, mpp=MPP)
        made.image_path.rename(paths["S"])
    for name, reps in (("A", 2), ("B", 4)):
        if not paths[name].exists():
            with Slide(paths["S"]) as slide:
                base = slide.read_region(0, 0, half, half, 0)
            mosaic = np.tile(base, (reps, reps, 1))
            write_pyramid_tiff(paths[name], mosaic, MPP, compression="jpeg", jpeg_quality=90)
    return paths


# -- models -------------------------------------------------------------------------------------


def set_threads() -> None:
    import torch

    threads = int(os.environ.get("BENCH_THREADS", "0"))
    if threads > 0:
        torch.set_num_threads(threads)


def constant_model() -> Any:
    """Logits that cost nothing: a (1, C, 1, 1) buffer expanded to the batch (no arithmetic)."""
    import torch
    from torch import nn

    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("logits", torch.tensor([3.0, 1.0, 2.0, 0.0, -1.0]).view(1, 5, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.logits.expand(x.shape[0], -1, x.shape[2], x.shape[3])

    return Constant().eval()


def unet() -> Any:
    """smp U-Net(resnet18), random weights; BENCH_TINY=1 (--quick): a two-layer conv net instead."""
    import torch
    from torch import nn

    from histoseg.models.segmentation import build_segmentation_model

    torch.manual_seed(0)
    if os.environ.get("BENCH_TINY") == "1":
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, len(CLASSES), 1)).eval()
    return build_segmentation_model(len(CLASSES), encoder="resnet18").eval()


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (reader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def gpu_timed(model: Any) -> Any:
    """Wrap a model so the GPU time of each forward is recorded (CUDA events); ``busy_seconds()`` sums it."""
    import torch
    from torch import nn

    class GpuTimed(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner, self.events = inner, []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = self.inner(x)
            end.record()
            self.events.append((start, end))
            return out

        def busy_seconds(self) -> float:
            torch.cuda.synchronize()
            return sum(s.elapsed_time(e) for s, e in self.events) / 1e3

    return GpuTimed(model)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _warm_imports() -> None:
    """One-time imports (tissue mask, TIFF writer, zarr for tiled reads) are not per-slide costs."""
    import scipy.ndimage  # noqa: F401
    import skimage.filters  # noqa: F401
    import skimage.morphology  # noqa: F401

    import histoseg.io.tiff  # noqa: F401

    with contextlib.suppress(ImportError):
        import zarr  # noqa: F401


# -- arms ---------------------------------------------------------------------------------------


def _selected_tiles(slide_path: str, tile: int) -> tuple[Any, list[Any], float]:
    """The tiles predict_slide runs (gaussian, overlap 0.5, glass skipped), and level-0 px per output px."""
    from histoseg.inference.predict import _tissue_tiles, plan_tiles
    from histoseg.io.slide import Slide
    from histoseg.io.tissue import tissue_mask

    slide = Slide(slide_path)
    width, height = slide.size_at_mpp(MPP)
    scale0 = MPP / slide.mpp
    thumb, ds = slide.thumbnail(1024)
    tiles = _tissue_tiles(plan_tiles(height, width, tile), tissue_mask(thumb), scale0 / ds, use_own=False)
    return slide, tiles, scale0


PRECISIONS = {"32": ("32", False), "32cl": ("32", True), "bf16cl": ("bf16", True), "16cl": ("16", True)}
"""Benchmark precision specs: ``(precision, channels_last)``."""
LABELS = {"32": "fp32", "32cl": "fp32 + channels-last", "bf16cl": "bf16 autocast + channels-last",
          "16cl": "fp16 autocast + channels-last"}  # fmt: skip


def auto_spec(device: str) -> str:
    """The spec ``--precision auto`` tries on ``device`` (before its agreement check)."""
    import torch

    from histoseg.inference.forward import candidate

    return {v: k for k, v in PRECISIONS.items()}[candidate(torch.device(device))]


def arm_predict(
    slide: str,
    out: str,
    kind: str,
    tile: int,
    batch: int,
    workers: int,
    spec: str,
    device: str,
    repeats: int = 1,
) -> dict:
    """predict_slide end to end; for the U-Net also forward-only on the same tiles (``repeats`` pairs)."""
    import torch

    from histoseg.inference.options import InferenceOptions
    from histoseg.inference.predict import predict_slide
    from histoseg.inference.predictor import Predictor

    set_threads()
    _warm_imports()
    model = constant_model() if kind == "constant" else unet()
    precision, channels_last = PRECISIONS[spec]
    dtype = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[precision]
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
        model(torch.rand(batch, 3, tile, tile, device=device))  # warm-up (allocator, kernels)
    timed = gpu_timed(model) if device == "cuda" else model
    predictor = Predictor(timed, CLASSES, mpp=MPP, tile_size=tile, margin=32, background_class=0)
    options = InferenceOptions(
        tile_size=tile, overlap=0.5, blend="gaussian", batch_size=batch, device=device,
        precision=precision, channels_last=channels_last, workers=workers,
    )  # fmt: skip

    def forward_only() -> float | None:
        return (
            None
            if kind == "constant"
            else _forward_only(model, slide, tile, batch, dtype, channels_last, device)
        )

    # Forward-only before and after each end-to-end run: their mean cancels a linear drift of the
    # machine's speed (a shared machine moves by +-10 % between consecutive runs).
    forwards = [forward_only()]
    rss_before = peak_rss_mb()
    runs = []
    for _ in range(max(1, repeats) if kind != "constant" else 1):
        cpu0 = cpu_seconds()
        start = time.perf_counter()
        result = predict_slide(slide, predictor, options, out_path=out, progress=False)
        runs.append((time.perf_counter() - start, cpu_seconds() - cpu0, result.timings))
        forwards.append(forward_only())
    ratios = (
        []
        if kind == "constant"
        else [e / ((forwards[i] + forwards[i + 1]) / 2) for i, (e, _, _) in enumerate(runs)]
    )
    pick = int(np.argsort(ratios)[len(ratios) // 2]) if ratios else 0  # the median run (upper median)
    seconds, cpu, timings = runs[pick]
    report: dict[str, Any] = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "pixels": result.shape[0] * result.shape[1],
        "shape": list(result.shape),
        "tiles_run": result.tiles_run,
        "tiles_total": result.tiles_total,
        "timings": timings,
        "peak_rss_mb": peak_rss_mb(),
        "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
        "rss_after_warmup_mb": rss_before,
    }
    if device == "cuda":
        report["gpu_busy"] = timed.busy_seconds() / sum(r[0] for r in runs)
    if kind == "constant":
        report.update(_read_and_write_alone(slide, out, tile, batch, workers))
    else:
        report["end_to_end_runs"] = [r[0] for r in runs]
        report["forward_runs"] = forwards
        report["ratios"] = ratios
        report["ratio"] = ratios[pick]
        report["forward_seconds"] = (forwards[pick] + forwards[pick + 1]) / 2  # type: ignore[operator]
    return report


def _forward_only(
    model: Any, slide_path: str, tile: int, batch: int, dtype: Any, channels_last: bool, device: str
) -> float:
    """Seconds in ``model(x)`` alone over the tiles predict_slide ran, same batches (reads untimed)."""
    import torch

    from histoseg.inference.reader import iter_batches, plan_reads

    slide, tiles, scale0 = _selected_tiles(slide_path, tile)
    plan = plan_reads(slide, tiles, tile, scale0, MPP)
    total = 0.0
    layout = torch.channels_last if channels_last else torch.contiguous_format
    with torch.inference_mode():
        for _, images in iter_batches(slide, plan, batch):
            x = images.to(device).permute(0, 3, 1, 2).float().div(255.0).contiguous(memory_format=layout)
            start = time.perf_counter()
            with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
                model(x).float()
            if device == "cuda":
                torch.cuda.synchronize()
            total += time.perf_counter() - start
    slide.close()
    return total


def _read_and_write_alone(slide_path: str, out: str, tile: int, batch: int, workers: int) -> dict:
    """Seconds to read every tile of the run (no model), and to write the label TIFF from memory."""
    import tifffile

    from histoseg.inference.predictor import Predictor
    from histoseg.inference.reader import iter_batches, plan_reads
    from histoseg.inference.writer import write_label_tiff

    slide, tiles, scale0 = _selected_tiles(slide_path, tile)
    plan = plan_reads(slide, tiles, tile, scale0, MPP)
    start = time.perf_counter()
    for _ in iter_batches(slide, plan, batch, workers=workers):
        pass
    read = time.perf_counter() - start
    labels = tifffile.imread(out)
    predictor = Predictor(constant_model(), CLASSES, mpp=MPP, tile_size=tile)
    start = time.perf_counter()
    write_label_tiff(Path(out + ".again.tif"), labels, MPP, predictor, slide)
    write = time.perf_counter() - start
    os.unlink(out + ".again.tif")
    slide.close()
    return {"read_alone": read, "write_alone": write, "window_reads": plan.level >= 0}


def arm_monai(slide: str, tile: int, batch: int) -> dict:
    import torch
    from monai.inferers import sliding_window_inference

    from histoseg.io.slide import Slide

    set_threads()
    model = unet()
    with torch.inference_mode():
        model(torch.rand(batch, 3, tile, tile))
    rss_before = peak_rss_mb()
    cpu0 = cpu_seconds()
    start = time.perf_counter()
    with Slide(slide) as handle:
        width, height = handle.size_at_mpp(MPP)
        region = handle.read_at_mpp(0, 0, width, height, MPP)
    with torch.inference_mode():
        image = torch.from_numpy(region).permute(2, 0, 1)[None].float().div_(255.0)
        del region
        logits = sliding_window_inference(
            image, roi_size=(tile, tile), sw_batch_size=batch, predictor=model, overlap=0.5,
            mode="gaussian", sigma_scale=0.125, progress=False,
        )  # fmt: skip
        labels = logits.argmax(1)[0].to(torch.uint8).numpy()
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": cpu_seconds() - cpu0,
        "pixels": int(labels.size),
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_warmup_mb": rss_before,
    }


# -- driver -------------------------------------------------------------------------------------


def run_arm(quick: bool, *args: str) -> dict:
    """One arm in a fresh interpreter (in this one with --quick: no clean RSS, much faster)."""
    if quick:
        return _dispatch(list(args))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"arm {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _dispatch(args: list[str]) -> dict:
    kind, *rest = args
    if kind == "monai":
        return arm_monai(rest[0], int(rest[1]), int(rest[2]))
    slide, out, tile, batch, workers, spec, device, repeats = rest
    return arm_predict(slide, out, kind, int(tile), int(batch), int(workers), spec, device, int(repeats))


def _mp(report: dict, seconds: float | None = None) -> float:
    return report["pixels"] / 1e6 / (seconds if seconds is not None else report["seconds"])


def print_ceiling(name: str, r: dict) -> None:
    t = r["timings"]
    accounted = sum(t.values())
    print(
        f"    {name}: {r['seconds']:.2f} s = {_mp(r):.1f} MP/s wall, {_mp(r, r['cpu_seconds']):.1f} MP per CPU-s | "
        f"waiting for tiles {t['read_wait']:.2f} s, "
        f"forward {t['forward']:.2f} s, merge {t['merge']:.2f} s, waiting for TIFF {t['write_wait']:.2f} s, "
        f"setup (open, thumbnail, tissue mask, plan) {r['seconds'] - accounted:.2f} s"
    )
    print(
        f"      reading alone {r['read_alone']:.2f} s = {_mp(r, r['read_alone']):.1f} MP/s "
        f"({'band' if r['window_reads'] else 'per-tile'} reads); "
        f"TIFF writing alone {r['write_alone']:.2f} s = {_mp(r, r['write_alone']):.1f} MP/s"
    )


def default_workers() -> int:
    """``quantify``'s default ``--workers`` (the default path's reader setting)."""
    from histoseg.inference.options import InferenceOptions

    return InferenceOptions().workers


def run_device(args: argparse.Namespace, slides: dict[str, Path], out: Path, device: str) -> dict:
    """Arms 1 and 2 on ``device``; returns the reports by name."""
    q, tile, batch, n = args.quick, str(args.tile), str(args.batch), str(args.workers)
    default = str(default_workers())
    reports: dict[str, dict] = {}
    auto = auto_spec(device)
    print(
        f"\n[{device}] 1. pipeline ceiling, constant-logit model, slide A, at quantify's default "
        f"precision ({LABELS[auto]}: what --precision auto runs here)"
    )
    first = f"ceiling_w{default}"
    for workers, spec in dict.fromkeys(((default, auto), (n, auto), (default, "32"))):
        r = run_arm(
            q,
            "constant",
            str(slides["A"]),
            str(out / f"A.w{workers}.{spec}.tif"),
            tile,
            batch,
            workers,
            spec,
            device,
            "1",
        )
        name = f"ceiling_w{workers}" + ("" if spec == auto else f"_{spec}")
        reports[name] = r
        print_ceiling(
            f"workers={workers}" + ("" if spec == auto else f", {LABELS[spec]} (--precision 32)"), r
        )
        if "gpu_busy" in r:
            print(f"      GPU busy {100 * r['gpu_busy']:.1f} % of wall time")
    print(f"    label map {reports[first]['shape']}, tiles run {reports[first]['tiles_run']}"
          f"/{reports[first]['tiles_total']}; target >= 25 MP/s")  # fmt: skip
    net = "tiny 2-layer conv net (--quick)" if q else "U-Net(resnet18)"
    print(f"\n[{device}] 2. default path, {net}, slide S, workers={default} (quantify's default)")
    specs = list(dict.fromkeys(("32", "32cl", "bf16cl", auto) if device == "cpu" else ("32", auto)))
    for spec in specs:
        r = run_arm(
            q,
            "unet",
            str(slides["S"]),
            str(out / f"S.{spec}.tif"),
            tile,
            batch,
            default,
            spec,
            device,
            str(args.repeats),
        )
        reports[f"unet_{spec}"] = r
        t = r["timings"]
        runs = "/".join(f"{v:.3f}" for v in r["ratios"])
        print(
            f"    {LABELS[spec]}{' <- auto' if spec == auto else ''}: end-to-end {r['seconds']:.2f} s "
            f"({_mp(r):.2f} MP/s, CPU {r['cpu_seconds']:.1f} s), forward-only {r['forward_seconds']:.2f} s "
            f"(runs: {'/'.join(f'{v:.2f}' for v in r['forward_runs'])}) -> ratio {r['ratio']:.3f}"
            f"{f' (median of {runs})' if len(r['ratios']) > 1 else ''} (target <= 1.10) | "
            f"in loop: tiles {t['read_wait']:.2f} s, forward {t['forward']:.2f} s, merge {t['merge']:.2f} s, "
            f"TIFF wait {t['write_wait']:.2f} s"
        )
        if "gpu_busy" in r:
            print(f"      GPU busy {100 * r['gpu_busy']:.1f} % of wall time")
    reference = min(reports["unet_32"]["end_to_end_runs"])
    for spec in specs[1:]:
        speed = reference / min(reports[f"unet_{spec}"]["end_to_end_runs"])
        print(f"    {LABELS[spec]} vs fp32 end-to-end (fastest runs): {speed:.2f}x")
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=4096, help="side of slide A in label pixels (1 um/px)")
    parser.add_argument("--tile", type=int, default=256, help="tile side in pixels")
    parser.add_argument("--batch", type=int, default=8, help="tiles per forward pass")
    parser.add_argument("--workers", type=int, default=2, help="reader processes of the N-worker arms")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="end-to-end runs per model arm, alternated with forward-only runs",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU arms as well")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/histoseg-bench-inference"))
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny slides, in-process, no MONAI/RSS"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads > 0:
        os.environ["BENCH_THREADS"] = str(args.threads)
    if args.child:
        print(json.dumps(_dispatch(args.child)))
        return
    if args.quick:
        args.size, args.tile, args.batch = min(args.size, 256), min(args.tile, 64), 4
        os.environ["BENCH_TINY"] = "1"
        os.environ.setdefault("BENCH_THREADS", "1")
    main_run(args)


def main_run(args: argparse.Namespace) -> None:
    import torch

    t0 = time.perf_counter()
    slides = make_slides(args.cache_dir, args.size)
    print(
        f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} intra-op threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; tile {args.tile}, overlap 0.5, "
        f"gaussian, batch {args.batch}; slides at the model's 1.0 um/px (JPEG q90 pyramids): "
        f"S {args.size // 2}^2, A {args.size}^2, B {2 * args.size}^2 px (ready in {time.perf_counter() - t0:.1f} s)"
    )
    out = args.cache_dir / "out"
    out.mkdir(exist_ok=True)
    cpu = run_device(args, slides, out, "cpu")
    if args.quick:
        print("\n3.-4. MONAI and peak RSS: skipped in --quick (they need fresh processes)")
    else:
        compare_monai(args, slides, cpu)
        compare_rss(args, slides, out, cpu)
    if args.device == "cuda":
        if torch.cuda.is_available():
            run_device(args, slides, out, "cuda")
        else:
            print("\n[cuda] skipped: torch.cuda.is_available() is False (no GPU or no CUDA build of torch)")
    else:
        print("\n[cuda] not requested (--device cuda); this machine has no GPU")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


def compare_monai(args: argparse.Namespace, slides: dict[str, Path], cpu: dict) -> None:
    m = run_arm(False, "monai", str(slides["S"]), str(args.tile), str(args.batch))
    h = cpu["unet_32"]
    print(
        f"\n3. slide S, fp32, histoseg (workers={default_workers()}, glass skipped, + TIFF) vs MONAI (all tiles)"
    )
    print(f"    histoseg: {h['seconds']:.2f} s (CPU {h['cpu_seconds']:.1f} s), peak RSS {h['peak_rss_mb']:.0f} MB "
          f"(+{h['peak_rss_mb'] - h['rss_after_warmup_mb']:.0f} MB after warm-up), tiles {h['tiles_run']}/{h['tiles_total']}")  # fmt: skip
    print(f"    MONAI:    {m['seconds']:.2f} s (CPU {m['cpu_seconds']:.1f} s), peak RSS {m['peak_rss_mb']:.0f} MB "
          f"(+{m['peak_rss_mb'] - m['rss_after_warmup_mb']:.0f} MB after warm-up)")  # fmt: skip
    print(
        f"    time histoseg/MONAI {h['seconds'] / m['seconds']:.3f}, peak RSS {h['peak_rss_mb'] / m['peak_rss_mb']:.3f}"
    )


def compare_rss(args: argparse.Namespace, slides: dict[str, Path], out: Path, cpu: dict) -> None:
    default = default_workers()
    a = cpu[f"ceiling_w{default}"]
    b = run_arm(False, "constant", str(slides["B"]), str(out / "B.tif"), str(args.tile), str(args.batch),
                str(default), auto_spec("cpu"), "cpu", "1")  # fmt: skip
    print(f"\n4. peak RSS, constant-logit model, workers={default} (quantify's default)")
    print(f"    A {a['shape']}: {a['peak_rss_mb']:.0f} MB; B {b['shape']} (4x area): {b['peak_rss_mb']:.0f} MB "
          f"({_mp(b):.1f} MP/s) -> ratio {b['peak_rss_mb'] / a['peak_rss_mb']:.3f} (target <= 1.2)")  # fmt: skip


if __name__ == "__main__":
    main()
