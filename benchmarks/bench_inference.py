"""Benchmark of streamed slide inference (histoseg.inference.predict.predict_slide).

One run, same model (smp U-Net resnet18, random weights, [0, 1] input via
histoseg.models.segmentation.build_segmentation_model) and same synthetic slides, each measurement in its own
subprocess so peak RSS (ru_maxrss) is clean:

(a) end-to-end throughput (tiles read, model, Gaussian blending, argmax, label-map TIFF written)
    divided by forward-only throughput on the same tiles -> overhead (target <= 10 %);
(b) peak RSS for slide A and for slide B of 4x its area (target ratio <= 1.2);
(c) histoseg vs MONAI sliding_window_inference on slide B (same model, region, overlap 0.5,
    gaussian mode, sigma 0.125, batch 4): time and peak RSS (target: at least as fast, less memory).

Slides are generated on the fly: textured "tissue" everywhere (no glass, so every tile runs in
both tools), JPEG pyramids at 0.5 um/px; the model runs at 1.0 um/px (pyramid level 1).

Usage: python benchmarks/bench_inference.py [--size 1024] [--tile 256] [--threads N] [--repeats 2]
(--threads sets torch's intra-op threads in every child; 0 = torch's default. On a shared machine,
1 thread gives steadier timings; tile reading runs in a background thread either way.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]


def make_slide(path: Path, side0: int, seed: int) -> None:
    """A (side0 x side0) textured pink/purple RGB pyramid at 0.5 um/px."""
    from PIL import Image

    from histoseg.io.tiff import write_pyramid_tiff

    rng = np.random.default_rng(seed)
    low = rng.random((side0 // 32, side0 // 32, 3)).astype(np.float32)
    blobs = np.asarray(
        Image.fromarray((low * 255).astype(np.uint8)).resize((side0, side0), Image.Resampling.BICUBIC)
    )
    rgb = np.empty((side0, side0, 3), np.uint8)
    base = np.array([205, 120, 175], np.float32)
    for y0 in range(0, side0, 1024):
        block = blobs[y0 : y0 + 1024].astype(np.float32)
        noise = rng.normal(0, 12, size=block.shape[:2] + (1,)).astype(np.float32)
        rgb[y0 : y0 + 1024] = np.clip(base - 0.45 * block + noise, 0, 255).astype(np.uint8)
    write_pyramid_tiff(path, rgb, 0.5, compression="jpeg")


def build_model() -> object:
    import torch

    from histoseg.models.segmentation import build_segmentation_model

    threads = int(os.environ.get("BENCH_THREADS", "0"))
    if threads > 0:
        torch.set_num_threads(threads)

    torch.manual_seed(0)
    return build_segmentation_model(len(CLASSES), encoder="resnet18").eval()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_histoseg(slide: str, out: str, tile: int, forward_only: bool) -> dict:
    # One-time imports (tissue mask, TIFF writer) are not per-slide costs: load them before timing.
    import scipy.ndimage  # noqa: F401
    import skimage.filters  # noqa: F401
    import skimage.morphology  # noqa: F401
    import torch

    import histoseg.io.tiff  # noqa: F401
    from histoseg.inference.options import InferenceOptions
    from histoseg.inference.predict import plan_tiles, predict_slide
    from histoseg.inference.predictor import Predictor
    from histoseg.io.slide import Slide

    model = build_model()
    predictor = Predictor(model, CLASSES, mpp=1.0, tile_size=tile, margin=32)
    with torch.inference_mode():
        model(torch.rand(4, 3, tile, tile))  # warm-up (allocator, kernels)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    options = InferenceOptions(overlap=0.5, blend="gaussian", batch_size=4, precision="32")
    result = predict_slide(slide, predictor, options, out_path=out, progress=False)
    seconds = time.perf_counter() - start
    report = {
        "seconds": seconds,
        "pixels": result.shape[0] * result.shape[1],
        "shape": list(result.shape),
        "tiles_run": result.tiles_run,
        "tiles_total": result.tiles_total,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_warmup_mb": rss_before,
    }
    if forward_only:
        # Forward-only on the very same tiles (read untimed), same batch size.
        height, width = result.shape
        tiles = plan_tiles(height, width, tile, blend="gaussian", overlap=0.5)
        forward = 0.0
        with Slide(slide) as handle, torch.inference_mode():
            for i in range(0, len(tiles), 4):
                batch = tiles[i : i + 4]
                images = np.stack([handle.read_at_mpp(t.x * 2, t.y * 2, tile, tile, 1.0) for t in batch])
                x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
                t0 = time.perf_counter()
                model(x)
                forward += time.perf_counter() - t0
        report["forward_seconds"] = forward
    return report


def child_monai(slide: str, tile: int) -> dict:
    import torch
    from monai.inferers import sliding_window_inference

    from histoseg.io.slide import Slide

    model = build_model()
    with torch.inference_mode():
        model(torch.rand(4, 3, tile, tile))
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    with Slide(slide) as handle:
        level = handle.best_level_for_mpp(1.0)
        width, height = handle.level_dimensions[level]
        region = handle.read_region(0, 0, width, height, level)
    with torch.inference_mode():
        image = torch.from_numpy(region).permute(2, 0, 1)[None].float().div_(255.0)
        del region
        logits = sliding_window_inference(
            image,
            roi_size=(tile, tile),
            sw_batch_size=4,
            predictor=model,
            overlap=0.5,
            mode="gaussian",
            sigma_scale=0.125,
            progress=False,
        )
        labels = logits.argmax(1)[0].to(torch.uint8).numpy()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "pixels": int(labels.size),
        "shape": list(labels.shape),
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_warmup_mb": rss_before,
    }


def _times(runs: list[dict]) -> str:
    return ", ".join(f"{r['seconds']:.1f}" for r in runs)


def run_child(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=int, default=1024, help="label-map side of slide A (pixels at 1 um/px)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="(c): histoseg and MONAI runs on slide B, alternated; the fastest of each is reported",
    )
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads > 0:
        os.environ["BENCH_THREADS"] = str(args.threads)
    if args.child:
        kind, *rest = args.child
        if kind == "histoseg":
            out = child_histoseg(rest[0], rest[1], int(rest[2]), rest[3] == "1")
        else:
            out = child_monai(rest[0], int(rest[1]))
        print(json.dumps(out))
        return

    import torch

    threads = args.threads or torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {threads} intra-op threads, {os.cpu_count()} CPUs; "
        "model smp Unet(resnet18), 5 classes; "
        f"tile {args.tile}, overlap 0.5, gaussian, batch 4; slides 0.5 um/px, model 1.0 um/px"
    )
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        folder = Path(tmp)
        slide_a, slide_b = folder / "A.tif", folder / "B.tif"
        t0 = time.perf_counter()
        make_slide(slide_a, 2 * args.size, seed=0)
        make_slide(slide_b, 4 * args.size, seed=1)
        print(
            f"slides written in {time.perf_counter() - t0:.1f} s: "
            f"A {2 * args.size}^2 px, B {4 * args.size}^2 px "
            f"(level 0); label maps {args.size}^2 and {2 * args.size}^2"
        )

        a = run_child("histoseg", str(slide_a), str(folder / "A.labels.tif"), str(args.tile), "1")
        mp = a["pixels"] / 1e6
        e2e, fwd = mp / a["seconds"], mp / a["forward_seconds"]
        print(
            "\n(a) throughput on slide A "
            f"({a['shape'][0]}x{a['shape'][1]} label px, {a['tiles_run']}/{a['tiles_total']} tiles run)"
        )
        print(f"    end-to-end predict_slide + TIFF: {a['seconds']:.2f} s = {e2e:.3f} MP/s")
        print(f"    forward only, same tiles:        {a['forward_seconds']:.2f} s = {fwd:.3f} MP/s")
        print(f"    ratio {e2e / fwd:.3f} -> overhead {100 * (1 - e2e / fwd):.1f} % (target <= 10 %)")

        runs_b, runs_m = [], []
        for _ in range(max(1, args.repeats)):
            runs_b.append(
                run_child("histoseg", str(slide_b), str(folder / "B.labels.tif"), str(args.tile), "0")
            )
            runs_m.append(run_child("monai", str(slide_b), str(args.tile)))
        b = min(runs_b, key=lambda r: r["seconds"])
        m = min(runs_m, key=lambda r: r["seconds"])
        b_rss = max(r["peak_rss_mb"] for r in runs_b)
        m_rss = max(r["peak_rss_mb"] for r in runs_m)
        print("\n(b) peak RSS (ru_maxrss, whole process incl. torch and model)")
        print(
            f"    slide A {a['shape'][0]}x{a['shape'][1]}: {a['peak_rss_mb']:.0f} MB "
            f"(after warm-up {a['rss_after_warmup_mb']:.0f} MB)"
        )
        print(
            f"    slide B {b['shape'][0]}x{b['shape'][1]} (4x area): {b_rss:.0f} MB "
            f"(after warm-up {b['rss_after_warmup_mb']:.0f} MB)"
        )
        print(
            f"    ratio B/A {b_rss / a['peak_rss_mb']:.3f} (target <= 1.2); growth above warm-up: "
            f"A +{a['peak_rss_mb'] - a['rss_after_warmup_mb']:.0f} MB, "
            f"B +{b_rss - b['rss_after_warmup_mb']:.0f} MB"
        )
        band = (len(CLASSES) + 1) * args.tile * b["shape"][1] * 4 / 2**20
        print(f"    float band bound (C+1) x tile x W x 4 B for B: {band:.1f} MB")

        print(
            f"\n(c) slide B ({b['shape'][0]}x{b['shape'][1]}, {b['tiles_run']} tiles), histoseg vs MONAI "
            f"sliding_window_inference; {len(runs_b)} alternated runs each, fastest shown"
        )
        print(
            f"    histoseg predict_slide (+ pyramid TIFF): {b['seconds']:.2f} s "
            f"(runs: {_times(runs_b)}), peak RSS {b_rss:.0f} MB "
            f"(+{b_rss - b['rss_after_warmup_mb']:.0f} MB)"
        )
        print(
            f"    MONAI (read level + infer + argmax):     {m['seconds']:.2f} s "
            f"(runs: {_times(runs_m)}), peak RSS {m_rss:.0f} MB "
            f"(+{m_rss - m['rss_after_warmup_mb']:.0f} MB)"
        )
        print(
            f"    time ratio histoseg/MONAI {b['seconds'] / m['seconds']:.3f}; "
            f"peak RSS ratio {b_rss / m_rss:.3f}; "
            f"forward-only estimate {b['tiles_run'] * a['forward_seconds'] / a['tiles_run']:.1f} s"
        )


if __name__ == "__main__":
    main()
