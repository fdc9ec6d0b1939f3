"""Leave-one-tile-out benchmark on the six FLASH mouse-kidney PAS tiles.

Data: Bouteldja et al., "Deep Learning-Based Segmentation and Quantification in Experimental
Kidney Histopathology", JASN 2021 (AGPL-3.0; read from ../shared/data, never copied).

For each of the six tiles: train on the other five for a fixed number of optimisation steps
(the CPU budget: steps x batch x patch^2 pixels; the wall and CPU time are printed), predict the
held-out tile and score it against its dense reference at the reference's own resolution
(level-0 pixels of the 516 x 516 labelled centre). Dice per class is pooled over the six
held-out tiles (a class absent from reference and prediction of a tile adds nothing); the
interstitial fraction A_int / (A_int + A_tub + A_glom) is compared per tile.

Label variants (``--labels``):
  dense      the full masks (value map and white-pixel rule of configs/flash.yaml)
  scribbles  strokes simulated from the dense masks (``--scribble-fraction`` of labelled pixels)
  both       dense, then scribbles, on the same folds and budget; prints the per-class Dice
             ratio scribbles / dense (the target is >= 0.90 per class)

Usage:
    python benchmarks/bench_flash.py --steps 300 [--labels dense|scribbles] [--border-w0 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from harness import (
    CLASSES,
    FLASH,
    GRID_SPACING_UM,
    NAMES,
    SCORED,
    SLIDE_MPP,
    confusion,
    dice,
    interstitial_fraction,
    predict_tile,
    reference,
    save_figure,
    train_fold,
)


def main(argv: list[str] | None = None) -> int:
    from histoseg.labels.simulate import SCRIBBLE_METHODS

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps per fold (the CPU budget)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--encoder", default="tu-tf_efficientnet_lite0")
    parser.add_argument("--encoder-weights", default="auto")
    parser.add_argument("--loss", default="ce", choices=["ce", "ce+dice", "ce+jaccard"])
    parser.add_argument("--border-w0", type=float, default=0.0)
    parser.add_argument("--border-sigma-um", type=float, default=2.5)
    parser.add_argument(
        "--class-weighting", default="none", choices=["none", "inverse_frequency", "sqrt_inverse_frequency"]
    )
    parser.add_argument(
        "--task",
        default="unet",
        choices=["unet", "grid"],
        help="unet: U-Net on dense/scribble labels; grid: patch classifier on grid points, dense by a trous",
    )
    parser.add_argument(
        "--labels",
        default="dense",
        choices=["dense", "scribbles", "both"],
        help="both: dense and scribble-trained models on the same folds, and their per-class Dice ratio",
    )
    parser.add_argument("--scribble-fraction", type=float, default=0.03)
    parser.add_argument("--brush-um", type=float, default=2.0)
    parser.add_argument(
        "--stroke-length", type=float, default=40.0, help="longest simulated stroke, brush widths"
    )
    parser.add_argument(
        "--scribble-method",
        default="skeleton",
        choices=SCRIBBLE_METHODS,
        help="how the simulator draws strokes inside each object",
    )
    parser.add_argument(
        "--grow-um",
        type=float,
        default=0.0,
        help="grow scribbles to superpixels of this size in microns before training (0 = off)",
    )
    parser.add_argument(
        "--grow-classes", default="", help="classes that grow, comma separated (default: all)"
    )
    parser.add_argument("--epochs", type=int, default=1, help="epochs the steps are split into")
    parser.add_argument("--stain-jitter", type=float, default=0.0, help="HED stain jitter sigma (0 = off)")
    parser.add_argument("--regularizer", default="none", choices=["none", "entropy", "crf"])
    parser.add_argument("--regularizer-weight", type=float, default=0.1)
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="network initialisation and patch sampling (the simulated scribbles stay the same)",
    )
    parser.add_argument("--folds", default=",".join(NAMES), help="held-out tiles to run (comma separated)")
    parser.add_argument(
        "--figures", default=None, help="write tile | reference | prediction PNGs per fold to this folder"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.encoder_weights.lower() in ("none", "null", ""):
        args.encoder_weights = None  # a random encoder (as bench_pathology_finetune.py)
    if not FLASH.exists():
        print(f"skipped: {FLASH} not found (the FLASH tiles live in ../shared/data)")
        return 0
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    variants = ["dense", "scribbles"] if args.labels == "both" else [args.labels]
    start = time.perf_counter()
    results = {}
    args.growth_stats = []
    for labels in variants:
        # the sparse-label regulariser is for scribbles; the dense baseline trains without it
        sparse = labels == "scribbles"
        overrides = {
            "labels": labels,
            "regularizer": args.regularizer if sparse else "none",
        }
        results[labels] = run_variant(argparse.Namespace(**{**vars(args), **overrides}))
    pixels = args.steps * args.batch_size * args.patch_size**2
    print(
        f"\nFLASH leave-one-tile-out, task={args.task}, encoder={args.encoder} weights={args.encoder_weights}, "
        f"loss={args.loss}, border_w0={args.border_w0}, class_weighting={args.class_weighting}, "
        f"regularizer={args.regularizer} (scribbles only), "
        f"scribble growth {args.grow_um:g} um, seed {args.seed}"
    )
    print(
        f"budget per fold: {args.steps} steps x {args.batch_size} x {args.patch_size}^2 px at {args.mpp} um/px "
        f"= {pixels / 1e6:.1f} MP"
    )
    for labels, result in results.items():
        name = "grid points" if args.task == "grid" else labels
        if labels == "scribbles":
            name += (
                f" (simulated, {100 * args.scribble_fraction:g} % of labelled pixels asked, "
                f"{100 * result['labelled_fraction']:.2f} % drawn, brush {args.brush_um:g} um, "
                f"{args.scribble_method}, strokes <= {args.stroke_length:g} brushes"
                + (f", grown to {args.grow_um:g}-um superpixels" if args.grow_um else "")
                + (f" ({args.grow_classes} only)" if args.grow_um and args.grow_classes else "")
                + ")"
            )
        dice = result["dice"]
        errors = [abs(t["error_pp"]) for t in result["tiles"]]
        if labels == "scribbles" and args.growth_stats:
            grown, agree, total = np.sum(args.growth_stats, axis=0)
            print(
                f"  final training labels (all folds, training grid): {100 * grown / total:.1f} % of the reference "
                f"pixels labelled, {100 * agree / max(grown, 1):.1f} % of them agree with the reference"
            )
        print(
            f"\n[{name}] mean train time per fold {np.mean([t['train_wall_s'] for t in result['tiles']]):.1f} s wall / "
            f"{np.mean([t['train_cpu_s'] for t in result['tiles']]):.1f} s CPU"
        )
        print(
            "  pooled Dice: "
            + "  ".join(f"{c} {dice[c]:.3f}" for c in SCORED)
            + f"   macro {np.nanmean([dice[c] for c in SCORED]):.3f}"
        )
        if result.get("point_accuracy") is not None:
            print(
                f"  grid-point accuracy on held-out tiles ({GRID_SPACING_UM:g} um grid): "
                f"{result['point_accuracy']:.3f} ({result['points']} points)"
            )
        print(
            "  interstitial fraction error per tile: "
            + ", ".join(f"{t['tile']} {t['error_pp']:+.1f}" for t in result["tiles"])
            + f" pp; |error| mean {np.mean(errors):.1f} pp, max {np.max(errors):.1f} pp"
        )
    ratios = None
    if len(results) == 2:
        dense, scrib = results["dense"]["dice"], results["scribbles"]["dice"]
        ratios = {c: scrib[c] / dense[c] if dense[c] else float("nan") for c in SCORED}
        verdict = "PASS" if all(r >= 0.90 for r in ratios.values()) else "FAIL"
        print(
            "\nDice ratio scribbles / dense (target >= 0.90 per class): "
            + "  ".join(f"{c} {ratios[c]:.2f}" for c in SCORED)
            + f"   -> {verdict}"
        )
    print(
        f"total wall time {time.perf_counter() - start:.0f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "results": results, "ratios": ratios}, indent=2)
        )
    return 0


def run_variant(args: argparse.Namespace) -> dict:
    """Leave-one-tile-out over ``args.folds`` with one label kind; pooled Dice and per-tile errors."""
    n = len(CLASSES)
    total = np.zeros((n, n), dtype=np.int64)
    per_tile = []
    point_hits = [0, 0]
    drawn = [0, 0]
    for held_out in args.folds.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            model, wall, cpu, labelled = train_fold(args, held_out, Path(tmp))
        drawn[0] += labelled[0]
        drawn[1] += labelled[1]
        ref = reference(held_out)
        pred = predict_tile(model, held_out, args.mpp)
        if args.figures:
            save_figure(Path(args.figures) / f"{args.task}_{args.labels}_{held_out}.png", held_out, ref, pred)
        if args.task == "grid":
            from histoseg.labels.simulate import grid_points_from_mask

            pts = grid_points_from_mask(ref, spacing_px=GRID_SPACING_UM / SLIDE_MPP)
            r, c = pts.y.astype(int), pts.x.astype(int)
            point_hits[0] += int((pred[r, c] == pts.label).sum())
            point_hits[1] += len(pts)
        total += confusion(ref, pred, n)
        ref_if, pred_if = interstitial_fraction(ref), interstitial_fraction(np.where(ref == 255, 255, pred))
        per_tile.append(
            {
                "tile": held_out,
                "train_wall_s": wall,
                "train_cpu_s": cpu,
                "ref_interstitial_fraction": ref_if,
                "pred_interstitial_fraction": pred_if,
                "error_pp": 100 * (pred_if - ref_if),
            }
        )
        print(
            f"[{args.labels}] fold {held_out:8s} train {wall:6.1f} s wall / {cpu:6.1f} s CPU   interstitial fraction "
            f"ref {ref_if:.3f} pred {pred_if:.3f} ({100 * (pred_if - ref_if):+.1f} pp)",
            flush=True,
        )
    return {
        "dice": dice(total),
        "tiles": per_tile,
        "confusion": total.tolist(),
        "labelled_fraction": drawn[0] / max(drawn[1], 1),
        "point_accuracy": point_hits[0] / point_hits[1] if point_hits[1] else None,
        "points": point_hits[1],
    }


if __name__ == "__main__":
    sys.exit(main())
