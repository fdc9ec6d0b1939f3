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
import csv
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FLASH = ROOT.parent / "shared" / "data" / "flash-mouse-pas"
NAMES = ["adenine", "alport", "healthy", "iri", "ntn", "uuo"]
VALUE_MAP = {
    0: "interstitium",
    1: "tubules",
    7: "tubules",
    2: "glomeruli",
    3: "glomeruli",
    4: "other",
    5: "other",
    6: "other",
}
WHITE_MAP = {0: "other"}
CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]
SCORED = ["interstitium", "tubules", "glomeruli", "other"]
SLIDE_MPP = 0.34  # estimated upstream (see ../shared/data/README.md)
GRID_SPACING_UM = 10.0  # grid points for --task grid (about 17 x 17 points per tile)


def reference(name: str) -> np.ndarray:
    """Dense reference of a tile's labelled centre, class indices (516, 516)."""
    from PIL import Image

    from histoseg.labels.dense import load_dense_labels

    image = np.asarray(Image.open(FLASH / "images" / f"{name}_01.png").convert("RGB"))[62:578, 62:578]
    return load_dense_labels(
        FLASH / "labels" / f"{name}_01-labels.png",
        CLASSES,
        image_size=(640, 640),
        value_map=VALUE_MAP,
        offset=(62, 62),
        white_value_map=WHITE_MAP,
        image=image,
    )


def write_table(
    folder: Path,
    held_out: str,
    labels: str,
    fraction: float,
    brush_um: float,
    method: str = "skeleton",
    stroke_length: float = 40.0,
) -> tuple[Path, tuple[int, int]]:
    """Slide table: five training tiles (dense or simulated scribbles), the held-out one as val.

    Returns:
        The table's path and (pixels labelled for training, labelled pixels of the dense
        references of the training tiles), both in level-0 pixels.
    """
    from histoseg.labels.scribbles import write_scribbles_geojson
    from histoseg.labels.simulate import simulate_scribbles
    from histoseg.labels.strokes import rasterize_strokes

    rows = []
    labelled = [0, 0]
    for i, name in enumerate(NAMES):
        image = FLASH / "images" / f"{name}_01.png"
        split = "val" if name == held_out else "train"
        if labels == "points" and split == "train":
            from histoseg.labels.points import PointSet, write_points_csv
            from histoseg.labels.simulate import grid_points_from_mask

            points = grid_points_from_mask(reference(name), spacing_px=GRID_SPACING_UM / SLIDE_MPP)
            points = PointSet(x=points.x + 62, y=points.y + 62, label=points.label)
            path = folder / f"{name}.points.csv"
            write_points_csv(points, path, CLASSES)
            rows.append([image, path, "points", split, SLIDE_MPP, "", ""])
        elif labels == "scribbles" and split == "train":
            mask = reference(name)
            brush_px = max(1, round(brush_um / SLIDE_MPP))
            strokes = simulate_scribbles(
                mask,
                fraction=fraction,
                brush_px=brush_px,
                seed=i,
                method=method,
                stroke_length_brushes=stroke_length,
            )
            labelled[0] += int((rasterize_strokes(strokes, mask.shape, brush_px) != 255).sum())
            labelled[1] += int((mask != 255).sum())
            path = folder / f"{name}.scribbles.geojson"
            # strokes are in mask pixels; the mask starts at level-0 (62, 62)
            from histoseg.labels.strokes import Stroke

            shifted = [Stroke(s.class_index, s.xy + 62.0) for s in strokes]
            write_scribbles_geojson(shifted, path, CLASSES, brush_px=max(1, round(brush_um / SLIDE_MPP)))
            rows.append([image, path, "scribbles", split, SLIDE_MPP, "", ""])
        else:
            if split == "train":
                dense_px = int((reference(name) != 255).sum())
                labelled[0] += dense_px
                labelled[1] += dense_px
            rows.append(
                [image, FLASH / "labels" / f"{name}_01-labels.png", "dense", split, SLIDE_MPP, 62, 62]
            )
    table = folder / "slides.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "labels", "kind", "split", "mpp", "label_offset_x", "label_offset_y"])
        writer.writerows(rows)
    return table, (labelled[0], labelled[1])


def predict_tile(model: torch.nn.Module, name: str, mpp: float) -> np.ndarray:
    """Predicted classes of the tile's labelled centre at level 0, (516, 516)."""
    from PIL import Image

    from histoseg.io.slide import Slide

    with Slide(FLASH / "images" / f"{name}_01.png", mpp=SLIDE_MPP) as slide:
        w, h = slide.size_at_mpp(mpp)
        image = slide.read_at_mpp(0, 0, w, h, mpp)
    multiple = getattr(model, "size_multiple", 32)
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    with torch.inference_mode():
        pred = model(x)[0, :, :h, :w].argmax(0).numpy().astype(np.uint8)
    full = np.asarray(Image.fromarray(pred).resize((640, 640), Image.Resampling.NEAREST))
    return full[62:578, 62:578]


def save_figure(path: Path, name: str, ref: np.ndarray, pred: np.ndarray) -> None:
    """Tile | reference overlay | prediction overlay (labelled centre, level-0 pixels)."""
    from PIL import Image

    from histoseg.report.areas import class_colors
    from histoseg.report.figures import blend_labels

    image = np.asarray(Image.open(FLASH / "images" / f"{name}_01.png").convert("RGB"))[62:578, 62:578]
    colors = class_colors(CLASSES)
    panels = [image, blend_labels(image, ref, colors, [255]), blend_labels(image, pred, colors, [255])]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(panels, axis=1)).save(path)


def confusion(ref: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    keep = ref != 255
    return np.bincount(ref[keep].astype(int) * n + pred[keep].astype(int), minlength=n * n).reshape(n, n)


def interstitial_fraction(labels: np.ndarray) -> float:
    i, t, g = (int((labels == CLASSES.index(c)).sum()) for c in ("interstitium", "tubules", "glomeruli"))
    return i / (i + t + g) if i + t + g else float("nan")


def train_fold(
    args: argparse.Namespace, held_out: str, folder: Path
) -> tuple[torch.nn.Module, float, float, tuple[int, int]]:
    import lightning as L

    from histoseg.datamodules import SlideDataModule
    from histoseg.training_options import group_options
    from histoseg.tasks import SegmentationTask

    # Seed before the network is built: its random decoder/head init must not depend on which
    # folds ran before (a fold's result is then the same alone or in a full run).
    L.seed_everything(args.seed, verbose=False)
    grid = args.task == "grid"
    table, labelled = write_table(
        folder,
        held_out,
        "points" if grid else args.labels,
        args.scribble_fraction,
        args.brush_um,
        args.scribble_method,
        args.stroke_length,
    )
    dm = SlideDataModule(**group_options(
        slides=str(table),
        classes=CLASSES,
        value_map=VALUE_MAP,
        white_value_map=WHITE_MAP,
        mpp=args.mpp,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        patches_per_epoch=args.steps * args.batch_size // args.epochs,
        val_patches=1,
        class_balanced=True,
        border_w0=args.border_w0,
        border_sigma_um=args.border_sigma_um,
        class_weighting=args.class_weighting,
        brush_um=args.brush_um,
        scribble_grow_um=args.grow_um if args.labels == "scribbles" else 0.0,
        scribble_grow_classes=args.grow_classes.split(",") if args.grow_classes else None,
        num_workers=0,
        seed=args.seed,
        centered=grid,
        stain_jitter=args.stain_jitter,
    ))
    if grid:
        from histoseg.tasks import PatchClassificationTask

        task: L.LightningModule = PatchClassificationTask(
            classes=CLASSES, mpp=args.mpp, patch_size=args.patch_size, lr=args.lr, scheduler="cosine"
        )
    else:
        task = SegmentationTask(
            classes=CLASSES,
            mpp=args.mpp,
            patch_size=args.patch_size,
            encoder=args.encoder,
            encoder_weights=args.encoder_weights,
            decoder_channels=[128, 64, 32, 24, 16],
            lr=args.lr,
            channels_last=True,
            loss=args.loss,
            regularizer=args.regularizer,
            regularizer_weight=args.regularizer_weight,
        )
    callbacks: list[L.Callback] = []
    trainer = L.Trainer(
        max_epochs=args.epochs,
        callbacks=callbacks,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(task, dm)
    network = task.network.eval()
    if grid:
        from histoseg.models.dense import DensePredictor

        network = DensePredictor(network, patch_size=args.patch_size, method="atrous")
        network.size_multiple = 1  # type: ignore[assignment]
    if args.labels == "scribbles" and args.grow_um:
        args.growth_stats.append(growth_agreement(dm))
    return network, time.perf_counter() - wall, time.process_time() - cpu, labelled


def growth_agreement(dm) -> tuple[int, int, int]:  # noqa: ANN001
    """Final training labels (grown scribbles) of the training tiles against the dense references.

    Returns:
        (labelled training-grid pixels inside the references' labelled centres, of which agree
        with the reference, reference pixels on the grid), counted at the training mpp.
    """
    counts = [0, 0, 0]
    for item in dm._labelled["train"]:
        ref = reference(Path(item.path).name.split("_01")[0])
        rows, cols = np.indices(item.labels.shape)
        # training-grid pixel centres in level-0 pixels, then in the reference's centre crop
        y = ((rows + 0.5) * item.scale).astype(int) - 62
        x = ((cols + 0.5) * item.scale).astype(int) - 62
        inside = (y >= 0) & (y < ref.shape[0]) & (x >= 0) & (x < ref.shape[1])
        truth = ref[y[inside], x[inside]]
        grown = item.labels[inside]
        known = truth != 255
        counts[0] += int(((grown != 255) & known).sum())
        counts[1] += int(((grown == truth) & known).sum())
        counts[2] += int(known.sum())
    return counts[0], counts[1], counts[2]


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
    tp = np.diag(total).astype(float)
    fp = total.sum(0) - tp
    fn = total.sum(1) - tp
    dice = {
        c: float(2 * tp[i] / (2 * tp[i] + fp[i] + fn[i])) if (2 * tp[i] + fp[i] + fn[i]) else float("nan")
        for i, c in enumerate(CLASSES)
    }
    return {
        "dice": dice,
        "tiles": per_tile,
        "confusion": total.tolist(),
        "labelled_fraction": drawn[0] / max(drawn[1], 1),
        "point_accuracy": point_hits[0] / point_hits[1] if point_hits[1] else None,
        "points": point_hits[1],
    }


if __name__ == "__main__":
    sys.exit(main())
