"""Precision and test-time augmentation of ``quantify`` on one synthetic slide: time, agreement, areas.

Runs :func:`histoseg.inference.predict.predict_slide` on the same generated slide
(``histoseg.synthetic.generate_slide``, seed 0, at the model's mpp) with the same model:

1. ``--precision 32`` (fp32, contiguous);
2. the default, ``--precision auto`` (bf16 autocast + channels-last on a CPU with AMX, fp32 +
   channels-last on other CPUs, when the network agrees with fp32 on the first tiles; its check
   is part of the timed run): which precision it chose, its check, the
   time ratio fp32 / default, the pixel agreement of the two label maps, and each class's area
   share and the interstitial fraction under both;
3. ``--tta`` at the default precision: time ratio TTA / no TTA, and the interstitial fraction's
   min / max over the 8 views and its expected-area value.

The model is a checkpoint (``--ckpt``, e.g. ``configs/kidney.yaml`` trained briefly) or, without
one, the architecture of ``configs/kidney.yaml`` (U-Net, tu-tf_efficientnet_lite0, decoder
[128, 64, 32, 24, 16]) with random weights (seed 0).

Usage::

    python benchmarks/bench_precision_tta.py --ckpt runs/kidney/checkpoints/last.ckpt --size 1536
    python benchmarks/bench_precision_tta.py --quick      # smoke run: small slide, tiles of 128

Wall-clock figures move with the machine's load; the fp32 and default arms are run ``--repeat`` times,
alternated, and the fastest run of each is kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]


def predictor(ckpt: str | None, tile: int) -> Any:
    from histoseg.inference.checkpoint import load_predictor
    from histoseg.inference.predictor import Predictor

    if ckpt:
        return load_predictor(ckpt, tile_size=tile)
    import torch

    from histoseg.models.segmentation import build_segmentation_model

    torch.manual_seed(0)
    network = build_segmentation_model(
        len(CLASSES),
        arch="unet",
        encoder="tu-tf_efficientnet_lite0",
        encoder_weights=None,
        encoder_depth=5,
        decoder_channels=[128, 64, 32, 24, 16],
    ).eval()
    return Predictor(network, list(CLASSES), mpp=1.0, tile_size=tile, margin=tile // 8)


def run(slide: Path, model: Any, repeat: int, **options: Any) -> Any:
    """Fastest of ``repeat`` runs of predict_slide; the label map is copied out of the last one."""
    from histoseg.inference.options import InferenceOptions
    from histoseg.inference.predict import predict_slide

    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = predict_slide(slide, model, InferenceOptions(**options), progress=False)
        best = min(best, time.perf_counter() - start)
    assert result is not None
    result.labels = np.array(result.labels)
    result.seconds = best
    return result


def shares(counts: np.ndarray) -> np.ndarray:
    return counts / max(1, counts.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt", default=None, help="checkpoint (default: random U-Net of configs/kidney.yaml)"
    )
    parser.add_argument("--size", type=int, default=1536, help="slide side in pixels at the model's mpp")
    parser.add_argument("--tile", type=int, default=256, help="tile side in pixels")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: 384 px slide, tiles of 128")
    args = parser.parse_args()
    if args.quick:
        args.size, args.tile = 384, 128
    import torch

    from histoseg.inference.forward import candidate, cpu_has_amx
    from histoseg.report.areas import interstitial_fraction
    from histoseg.synthetic import generate_slide

    model = predictor(args.ckpt, args.tile)
    with tempfile.TemporaryDirectory() as tmp:
        made = generate_slide(tmp, "bench", seed=0, width=args.size, height=args.size, mpp=float(model.mpp))
        slide = made.image_path
        common = {"tile_size": args.tile, "batch_size": 4}
        with torch.inference_mode():  # warm-up (allocator, kernels) in every precision and format
            x = torch.rand(4, 3, args.tile, args.tile)
            model.model(x)
            net = model.model.to(memory_format=torch.channels_last)
            net(x.contiguous(memory_format=torch.channels_last))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                net(x.contiguous(memory_format=torch.channels_last))
            model.model.to(memory_format=torch.contiguous_format)
        # Alternated (fp32, auto, fp32, auto, ...) so a drift of the machine's speed hits both.
        runs = [
            (run(slide, model, 1, **common, precision="32"), run(slide, model, 1, **common))
            for _ in range(args.repeat)
        ]
        fp32 = min((r[0] for r in runs), key=lambda r: r.seconds)
        auto = min((r[1] for r in runs), key=lambda r: r.seconds)
        tta = run(slide, model, 1, **common, tta=True)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU AMX: {cpu_has_amx()}, "
        f"auto tries {candidate(torch.device('cpu'))} (precision, channels_last)"
    )
    print(
        f"model: {'checkpoint ' + args.ckpt if args.ckpt else 'random U-Net (configs/kidney.yaml architecture)'}"
    )
    print(
        f"slide: {args.size} x {args.size} px at {model.mpp} um/px, tile {args.tile}, {fp32.tiles_run} tiles run"
    )
    print(f"precision 32:   {fp32.seconds:7.2f} s")
    print(
        f"precision auto: {auto.seconds:7.2f} s  -> ran {auto.precision}, channels_last={auto.channels_last}"
    )
    print(f"  check on the first tiles: {auto.precision_check}")
    print(f"  speed-up fp32 / auto: {fp32.seconds / auto.seconds:.2f}x")
    agree = float((fp32.labels == auto.labels).mean())
    print(f"  label-map pixel agreement auto vs fp32: {agree:.5f}")
    diff = 100 * (shares(auto.counts) - shares(fp32.counts))
    for name, d, a, b in zip(fp32.classes, diff, shares(fp32.counts), shares(auto.counts), strict=True):
        print(f"    {name:13s} share fp32 {100 * a:6.2f} %  auto {100 * b:6.2f} %  diff {d:+.3f} pp")
    f32, fauto = (
        interstitial_fraction(fp32.counts, fp32.classes),
        interstitial_fraction(auto.counts, auto.classes),
    )
    print(f"  interstitial fraction fp32 {f32:.4f}  auto {fauto:.4f}  diff {100 * (fauto - f32):+.3f} pp")
    views = [interstitial_fraction(c, tta.classes) for c in tta.view_counts]
    print(
        f"tta ({tta.precision}): {tta.seconds:7.2f} s  -> {tta.seconds / auto.seconds:.2f}x the time without TTA"
    )
    print(
        f"  interstitial fraction: TTA {interstitial_fraction(tta.counts, tta.classes):.4f}, views "
        f"min {min(views):.4f} max {max(views):.4f}, expected-area {interstitial_fraction(tta.expected_counts, tta.classes):.4f}"
    )


if __name__ == "__main__":
    main()
