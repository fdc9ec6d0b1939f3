"""Peak memory over a cohort: RSS after slide 1 and after slide 20 of one quantify run (no leak).

Generates 20 synthetic slides (or uses --slides), runs ``histoseg.quantify.run_quantify`` one slide
at a time in this process and prints the resident set size after each slide, then the ratio
RSS(after 20) / RSS(after 1) (target: flat, at most 1.1).

Usage:
    python benchmarks/bench_cohort_memory.py [--ckpt 'runs/kidney/**/last.ckpt'] [--n 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import psutil


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", default=None, help="histoseg checkpoint (default: a tiny random U-Net)")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--size", type=int, default=1536, help="slide side in pixels at 0.5 um/px")
    args = parser.parse_args()
    import torch

    from histoseg.inference.predictor import Predictor
    from histoseg.quantify import Cohort
    from histoseg.synthetic import generate_dataset

    if args.ckpt:
        from histoseg.inference.checkpoint import load_predictor

        predictor = load_predictor(args.ckpt)
    else:
        from histoseg.models.segmentation import build_segmentation_model

        torch.manual_seed(0)
        net = build_segmentation_model(
            5, encoder="resnet18", encoder_depth=3, decoder_channels=(16, 8, 8)
        ).eval()
        predictor = Predictor(
            model=net,
            classes=["background", "interstitium", "tubules", "glomeruli", "other"],
            mpp=1.0,
            tile_size=256,
            margin=32,
            size_multiple=8,
        )
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        slides = generate_dataset(
            Path(tmp) / "slides", n_slides=args.n, seed=0, width=args.size, height=args.size
        )
        cohort = Cohort(predictor, [s.image_path for s in slides], Path(tmp) / "out")
        rss = []
        for index in range(len(cohort.paths)):
            result = cohort.process(index)
            assert result["status"] == "ok", result
            rss.append(process.memory_info().rss / 2**20)
            print(f"after slide {index + 1:2d}: RSS {rss[-1]:7.1f} MB", flush=True)
        cohort.write_report()
    print(
        f"RSS after slide 1: {rss[0]:.1f} MB; after slide {len(rss)}: {rss[-1]:.1f} MB; "
        f"ratio {rss[-1] / rss[0]:.3f} (target <= 1.1)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
