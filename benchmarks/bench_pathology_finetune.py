"""Pathology-specific fine-tuning from scribbles on the six FLASH mouse-kidney PAS tiles (the seed workflow).

Data: Bouteldja et al., JASN 2021 (AGPL-3.0; read from ../shared/data, never copied into the repo).

For each tile P (a disease model the base has never seen) and each seed:

1. **Base**: a dense U-Net trained on the other five tiles with the model and data settings of
   ``configs/flash.yaml`` before issue 14 by default (128^2 patches, border term w0 5;
   ``--base-steps`` optimisation steps, 160); the shipped recipe is ``--base-steps 300
   --patch-size 192 --base-border-w0 0``. Fitted through Lightning and saved
   with ``trainer.save_checkpoint``, so it is a real histoseg checkpoint (``histoseg`` block).
2. **Split**: P's labelled 516 x 516 centre is cut into two halves (``--split`` names the
   *adaptation* half: left, right, top or bottom, or ``auto``, per tile the first of them
   holding every class the tile holds; the opposite half is the *evaluation* half).
   The adaptation half's image is cropped at the split line before training, so no pixel of the
   evaluation half is ever seen in training (not even by the unsupervised CRF term).
3. **Fine-tuned** (per ``--fractions``): scribbles simulated on the adaptation half with
   :func:`histoseg.labels.simulate.simulate_scribbles` (that fraction of its labelled pixels,
   seeded by the seed), written as QuPath GeoJSON in level-0 pixels of the crop; the base is
   fine-tuned on them with ``configs/kidney_scribbles.yaml``'s recipe (``model.init_checkpoint`` =
   the base checkpoint, partial CE + CRF regulariser 0.1, lr 5e-4 cosine, encoder not frozen,
   ``--finetune-steps``, 64 = its 4 epochs x 128 patches / batch 8). CPU seconds
   (``time.process_time``) and wall seconds of the fit are recorded.
4. **Dense half** (upper bound): the same start (``--upper-init base``, default) or ImageNet weights
   (``--upper-init imagenet``), trained on the dense labels of the adaptation half for the same
   steps and learning rate (no regulariser: every pixel is labelled).
5. **Score** on the evaluation half: Dice per class and the signed interstitial-fraction error
   (prediction minus reference, percentage points), per tile and pooled over tiles (Dice from the
   pooled confusion matrix; mean absolute IF error); with several seeds, mean +- sd over seeds.

Target ("Must show" of issue 14): fine-tuning from 3 % scribbles at least halves the base model's
mean absolute interstitial-fraction error on the unseen half.

Cost (estimated from two short timed runs, iri, 1 torch thread, loaded 2-core machine): about
0.83 CPU s per base step and 0.87 per fine-tuning step (batch 8 x 128^2 at 0.5 um/px), plus about
10 CPU s per tile and seed (labels, predictions): about 370 CPU s per tile and seed at the default
steps with three fractions, so about 6,600 CPU s (1.8 CPU hours) for 6 tiles x 3 seeds. Under load,
``--threads 1``: two torch threads on a busy machine cost about 4 x the CPU time.

Usage:
    python benchmarks/bench_pathology_finetune.py --seeds 0 1 2 --out pathology_finetune.json
    python benchmarks/bench_pathology_finetune.py --quick      # smoke run, one tile, seconds
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from harness import (
    CLASSES,
    FLASH,
    NAMES,
    SCORED,
    SLIDE_MPP,
    VALUE_MAP,
    WHITE_MAP,
    confusion,
    dice,
    interstitial_fraction,
    predict_tile,
    quiet_trainer,
    reference,
)

TILE = 640  # level-0 side of a FLASH tile
OFFSET = 62  # level-0 offset of the labelled 516 x 516 centre
CENTRE = 516
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
# configs/flash.yaml: model and data block of the base
DECODER = [128, 64, 32, 24, 16]
ENCODER = "tu-tf_efficientnet_lite0"


def half_box(side: str) -> tuple[int, int, int, int]:
    """Rows and columns ``(r0, r1, c0, c1)`` of one half of the 516 x 516 reference."""
    mid = CENTRE // 2
    return {
        "left": (0, CENTRE, 0, mid),
        "right": (0, CENTRE, mid, CENTRE),
        "top": (0, mid, 0, CENTRE),
        "bottom": (mid, CENTRE, 0, CENTRE),
    }[side]


def crop_box(side: str) -> tuple[int, int, int, int]:
    """Level-0 ``(x0, y0, x1, y1)`` of the tile image kept for training on half ``side``.

    The half plus the unlabelled outer ring of the tile on its own sides; cut at the split line.
    """
    r0, r1, c0, c1 = half_box(side)
    x0 = 0 if c0 == 0 else c0 + OFFSET
    x1 = TILE if c1 == CENTRE else c1 + OFFSET
    y0 = 0 if r0 == 0 else r0 + OFFSET
    y1 = TILE if r1 == CENTRE else r1 + OFFSET
    return x0, y0, x1, y1


def half_with_every_class(ref: np.ndarray) -> str:
    """``--split auto``: the first of left, right, top, bottom whose half of the (H, W) reference
    holds a pixel of every scored class the whole labelled centre holds (a user scribbles every
    class; a half without one teaches the model to forget it). Left when none does."""
    present = {i for i, c in enumerate(CLASSES) if c in SCORED and bool((ref == i).any())}
    for side in OPPOSITE:
        r0, r1, c0, c1 = half_box(side)
        half = ref[r0:r1, c0:c1]
        if all(bool((half == i).any()) for i in present):
            return side
    return "left"


def masked_to(ref: np.ndarray, side: str) -> np.ndarray:
    """The reference with everything outside half ``side`` set to 255 (unlabelled)."""
    r0, r1, c0, c1 = half_box(side)
    out = np.full_like(ref, 255)
    out[r0:r1, c0:c1] = ref[r0:r1, c0:c1]
    return out


def _write_csv(path: Path, rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "labels", "kind", "split", "mpp", "label_offset_x", "label_offset_y"])
        writer.writerows(rows)
    return path


def base_table(folder: Path, held_out: str) -> Path:
    """Slide table of the base: the five other tiles, dense FLASH labels, all split=train."""
    rows: list[list[object]] = [
        [FLASH / "images" / f"{n}_01.png", FLASH / "labels" / f"{n}_01-labels.png", "dense", "train"]
        + [SLIDE_MPP, OFFSET, OFFSET]
        for n in NAMES
        if n != held_out
    ]
    return _write_csv(folder / "base.csv", rows)


def adaptation_tables(
    folder: Path, tile: str, side: str, fractions: list[float], brush_um: float, seed: int
) -> tuple[Path, dict[float, tuple[Path, float]]]:
    """Tables of the adaptation half: its dense labels, and scribbles at each fraction.

    The image is the tile cropped to :func:`crop_box` (a temporary PNG); labels are class indices
    (255 = unlabelled) of the half only, at their offset in the crop.

    Returns:
        The dense table, and ``{fraction: (scribble table, fraction actually drawn)}``.
    """
    from PIL import Image

    from histoseg.labels.scribbles import write_scribbles_geojson
    from histoseg.labels.simulate import simulate_scribbles
    from histoseg.labels.strokes import Stroke, rasterize_strokes

    x0, y0, x1, y1 = crop_box(side)
    r0, r1, c0, c1 = half_box(side)
    image = folder / f"{tile}_{side}.png"
    Image.open(FLASH / "images" / f"{tile}_01.png").convert("RGB").crop((x0, y0, x1, y1)).save(image)
    half = reference(tile)[r0:r1, c0:c1]
    ox, oy = c0 + OFFSET - x0, r0 + OFFSET - y0
    dense = folder / f"{tile}_{side}-labels.png"
    Image.fromarray(half.astype(np.uint8)).save(dense)
    dense_table = _write_csv(folder / "dense_half.csv", [[image, dense, "dense", "train", SLIDE_MPP, ox, oy]])
    brush_px = max(1, round(brush_um / SLIDE_MPP))
    scribbles: dict[float, tuple[Path, float]] = {}
    for fraction in fractions:
        strokes = simulate_scribbles(half, fraction=fraction, brush_px=brush_px, seed=seed)
        drawn = (rasterize_strokes(strokes, half.shape, brush_px) != 255).sum() / max((half != 255).sum(), 1)
        path = folder / f"{tile}_{side}_{fraction:g}.geojson"
        shifted = [Stroke(s.class_index, s.xy + np.array([ox, oy], dtype=float)) for s in strokes]
        write_scribbles_geojson(shifted, path, CLASSES, brush_px=brush_px)
        table = _write_csv(
            folder / f"scribbles_{fraction:g}.csv", [[image, path, "scribbles", "train", SLIDE_MPP, "", ""]]
        )
        scribbles[fraction] = (table, float(drawn))
    return dense_table, scribbles


def fit(
    args: argparse.Namespace,
    table: Path,
    seed: int,
    steps: int,
    *,
    dense: bool,
    init: str | None,
    save: Path | None = None,
) -> tuple[torch.nn.Module, float, float]:
    """Fit one U-Net through Lightning; returns (network in eval mode, wall s, CPU s of the fit).

    ``dense`` selects the label handling (FLASH raw values for the base, class indices for the
    dense half, scribbles otherwise); ``init`` is the starting checkpoint (None = the base recipe:
    ``--encoder-weights`` and lr 2e-3); ``save`` writes the fitted checkpoint there.
    """
    import lightning as L

    from histoseg.datamodules import SlideDataModule
    from histoseg.tasks import SegmentationTask
    from histoseg.training_options import group_options

    L.seed_everything(seed, verbose=False)
    base = save is not None
    flash_labels = base  # raw FLASH values only in the base table; the half tables hold class indices
    dm = SlideDataModule(**group_options(
        slides=str(table),
        classes=CLASSES,
        value_map=VALUE_MAP if flash_labels else None,
        white_value_map=WHITE_MAP if flash_labels else None,
        mpp=args.mpp,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        patches_per_epoch=steps * args.batch_size,
        val_patches=1,
        class_balanced=True,
        # The base: --base-border-w0 (5, flash.yaml before issue 14; 0 as shipped since); the
        # fine-tuning recipe has no border term.
        border_w0=args.base_border_w0 if base else 0.0,
        border_sigma_um=2.5,
        brush_um=args.brush_um,
        num_workers=0,
        seed=seed,
    ))
    task = SegmentationTask(
        classes=CLASSES,
        mpp=args.mpp,
        patch_size=args.patch_size,
        arch="unet",
        encoder=ENCODER,
        encoder_weights=args.encoder_weights if init is None else None,
        decoder_channels=DECODER,
        lr=0.002 if init is None else 0.0005,  # flash.yaml from ImageNet; kidney_scribbles.yaml
        scheduler="cosine",
        channels_last=True,
        loss="ce",
        regularizer="none" if dense else "crf",
        regularizer_weight=0.1,
        init_checkpoint=init,
        freeze_encoder=False,
    )
    trainer = quiet_trainer(max_epochs=1)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(task, dm)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if save is not None:
        trainer.save_checkpoint(save)
    return task.network.eval(), wall, cpu


def score(ref: np.ndarray, pred: np.ndarray) -> dict:
    """Confusion matrix and signed interstitial-fraction error (pp) of one evaluation half."""
    ref_if = interstitial_fraction(ref)
    pred_if = interstitial_fraction(np.where(ref == 255, 255, pred))
    return {
        "confusion": confusion(ref, pred, len(CLASSES)).tolist(),
        "ref_if": ref_if,
        "pred_if": pred_if,
        "if_error_pp": 100 * (pred_if - ref_if),
    }


def run_tile(args: argparse.Namespace, tile: str, seed: int) -> dict[str, dict]:
    """Base, fine-tuned per fraction and dense-half models of one tile and seed, scored on the evaluation half."""
    whole = reference(tile)
    split = half_with_every_class(whole) if args.split == "auto" else args.split
    ref = masked_to(whole, OPPOSITE[split])
    if args.split == "auto":
        print(f"seed {seed} {tile:8s} adaptation half {split}", flush=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt = folder / "base.ckpt"
        net, wall, cpu = fit(
            args, base_table(folder, tile), seed, args.base_steps, dense=True, init=None, save=ckpt
        )
        base_pred = predict_tile(net, tile, args.mpp)
        results["base"] = score(ref, base_pred) | {"train_cpu_s": cpu, "train_wall_s": wall}
        # The same base scored on the whole held-out tile: its leave-one-tile-out figure.
        results["base, whole tile"] = score(whole, base_pred) | {
            "train_cpu_s": cpu,
            "train_wall_s": wall,
        }
        dense_table, scribbles = adaptation_tables(folder, tile, split, args.fractions, args.brush_um, seed)
        for fraction, (table, drawn) in scribbles.items():
            net, wall, cpu = fit(args, table, seed, args.finetune_steps, dense=False, init=str(ckpt))
            results[f"finetuned {100 * fraction:g} %"] = score(ref, predict_tile(net, tile, args.mpp)) | {
                "train_cpu_s": cpu,
                "train_wall_s": wall,
                "drawn_fraction": drawn,
            }
        init = str(ckpt) if args.upper_init == "base" else None
        net, wall, cpu = fit(args, dense_table, seed, args.finetune_steps, dense=True, init=init)
        results["dense half"] = score(ref, predict_tile(net, tile, args.mpp)) | {
            "train_cpu_s": cpu,
            "train_wall_s": wall,
        }
    return results


def pool_seed(per_tile: dict[str, dict[str, dict]], model: str) -> dict[str, float]:
    """One seed, one model, pooled over tiles: Dice (pooled confusion), mean |IF error|, mean signed error, CPU s."""
    rows = [tiles[model] for tiles in per_tile.values()]
    conf = np.sum([np.array(r["confusion"]) for r in rows], axis=0)
    errors = np.array([r["if_error_pp"] for r in rows])
    out = {c: d for c, d in dice(conf).items() if c in SCORED}
    return out | {
        "mean_abs_if_error_pp": float(np.mean(np.abs(errors))),
        "mean_if_error_pp": float(np.mean(errors)),
        "train_cpu_s": float(np.mean([r["train_cpu_s"] for r in rows])),
    }


def pooled(results: dict[int, dict[str, dict[str, dict]]], models: list[str]) -> dict[str, dict]:
    """Per model: each pooled quantity as mean and sd (ddof 1; 0 with one seed) over seeds."""
    out: dict[str, dict] = {}
    for model in models:
        per_seed = [pool_seed(per_tile, model) for per_tile in results.values()]
        out[model] = {
            key: {
                "mean": float(np.mean([s[key] for s in per_seed])),
                "sd": float(np.std([s[key] for s in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0,
            }
            for key in per_seed[0]
        }
    return out


def _cell(value: float, sd: float | None = None, fmt: str = ".3f") -> str:
    if sd is None:
        return format(value, fmt)
    return f"{value:{fmt}} ± {sd:{fmt}}"


def table(results: dict[int, dict[str, dict[str, dict]]], models: list[str], summary: dict[str, dict]) -> str:
    """Markdown table: per tile rows (mean over seeds), then pooled rows (mean ± sd over seeds)."""
    head = (
        "| tile | model | "
        + " | ".join(f"Dice {c}" for c in SCORED)
        + " | IF error (pp) | fine-tuning CPU s |"
    )
    lines = [head, "|" + "---|" * (len(SCORED) + 4)]
    tiles = list(next(iter(results.values())))
    for tile in tiles:
        for model in models:
            rows = [per_tile[tile][model] for per_tile in results.values()]
            d = dice(np.sum([np.array(r["confusion"]) for r in rows], axis=0))
            err = float(np.mean([r["if_error_pp"] for r in rows]))
            cpu = float(np.mean([r["train_cpu_s"] for r in rows]))
            cells = [_cell(d[c]) for c in SCORED] + [
                f"{err:+.1f}",
                "—" if model.startswith("base") else f"{cpu:.1f}",
            ]
            lines.append(f"| {tile} | {model} | " + " | ".join(cells) + " |")
    for model in models:
        s = summary[model]
        cells = [_cell(s[c]["mean"], s[c]["sd"]) for c in SCORED]
        cells.append(
            f"\\|err\\| {_cell(s['mean_abs_if_error_pp']['mean'], s['mean_abs_if_error_pp']['sd'], '.1f')}"
            f" (signed {s['mean_if_error_pp']['mean']:+.1f})"
        )
        cells.append(
            "—"
            if model.startswith("base")
            else _cell(s["train_cpu_s"]["mean"], s["train_cpu_s"]["sd"], ".1f")
        )
        lines.append(f"| **pooled** | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options; ``--quick`` overrides steps, patch, batch, tiles, fractions and seeds for a smoke run."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiles", nargs="+", default=NAMES, choices=NAMES, help="tiles P to adapt to")
    parser.add_argument(
        "--split",
        default="left",
        choices=[*OPPOSITE, "auto"],
        help="adaptation half of each tile; auto: per tile, the first half holding every class the tile holds",
    )
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.03, 0.10])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--base-steps",
        type=int,
        default=160,
        help="160: configs/flash.yaml before issue 14 (10 epochs x 128 / 8); the shipped budget is 300 at --patch-size 192",
    )
    parser.add_argument(
        "--base-border-w0",
        type=float,
        default=5.0,
        help="border term of the base: 5 (configs/flash.yaml before issue 14); the shipped flash.yaml has 0",
    )
    parser.add_argument(
        "--finetune-steps", type=int, default=64, help="configs/kidney_scribbles.yaml: 4 epochs x 128 / 8"
    )
    parser.add_argument(
        "--upper-init", default="base", choices=["base", "imagenet"], help="start of dense half"
    )
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--brush-um", type=float, default=2.0, help="simulated brush (as bench_flash.py)")
    parser.add_argument(
        "--encoder-weights", default="auto", help="base start: auto (ImageNet, offline) or none"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--out", default=None, help="write all numbers to this JSON file")
    parser.add_argument(
        "--combine",
        nargs="+",
        default=None,
        metavar="JSON",
        help="print the table of earlier --out files together (runs split by tile or seed)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: iri, 3 %%, 4 + 2 steps, 2 x 64^2 px at 1 um/px"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tiles, args.fractions, args.seeds = ["iri"], [0.03], [0]
        args.base_steps, args.finetune_steps, args.patch_size, args.batch_size = 4, 2, 64, 2
        args.encoder_weights, args.mpp = "none", 1.0
        args.threads = args.threads or 1  # on a loaded machine, 2 torch threads cost 4x the CPU
    if args.encoder_weights.lower() in ("none", "null", ""):
        args.encoder_weights = None
    if min(args.base_steps, args.finetune_steps, args.batch_size) < 1 or args.patch_size % 32:
        parser.error("steps and batch size must be >= 1 and --patch-size a multiple of 32")
    if not all(0 < f < 1 for f in args.fractions):
        parser.error("--fractions must lie in (0, 1), e.g. 0.01 0.03 0.10")
    return args


def report(results: dict[int, dict[str, dict[str, dict]]], models: list[str]) -> dict[str, dict]:
    """Print the markdown table and the target verdict; returns the pooled summary."""
    summary = pooled(results, models)
    print(table(results, models, summary))
    target = summary["base"]["mean_abs_if_error_pp"]["mean"] / 2
    if "finetuned 3 %" in summary:
        got = summary["finetuned 3 %"]["mean_abs_if_error_pp"]["mean"]
        verdict = "PASS" if got <= target else "FAIL"
        print(
            f"\ntarget: 3 % scribbles halve the base's mean |IF error|: {got:.1f} <= {target:.1f} pp -> {verdict}"
        )
    return summary


def combine(paths: list[str], tiles: list[str] | None = None) -> int:
    """Merge the per-seed, per-tile results of several ``--out`` files and print one table.

    Only ``tiles`` (all tiles found when None) are kept, and only the models run on every kept tile
    of every seed (runs with other ``--fractions`` can be combined: the pooled rows never mix tile
    sets; the models left out are named).
    """
    results: dict[int, dict[str, dict[str, dict]]] = {}
    for path in paths:
        payload = json.loads(Path(path).read_text())
        for seed, per_tile in payload["per_seed"].items():
            results.setdefault(int(seed), {}).update(per_tile)
    if tiles is not None:
        results = {s: {t: r for t, r in per_tile.items() if t in tiles} for s, per_tile in results.items()}
        results = {s: per_tile for s, per_tile in results.items() if per_tile}
    if not results:
        print("no results for these tiles")
        return 1
    models: list[str] = []
    for per_tile in results.values():
        for per_model in per_tile.values():
            models += [m for m in per_model if m not in models]
    everywhere = [m for m in models if all(m in r for pt in results.values() for r in pt.values())]
    counts = {seed: sorted(per_tile) for seed, per_tile in results.items()}
    if len({tuple(t) for t in counts.values()}) != 1:
        print(f"warning: seeds cover different tiles: {counts}")
    print(f"combined {len(paths)} files: seeds {sorted(results)}, tiles {next(iter(counts.values()))}")
    if len(everywhere) < len(models):
        print(f"left out (not run on every tile): {', '.join(m for m in models if m not in everywhere)}")
    print()
    report({s: results[s] for s in sorted(results)}, everywhere)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the markdown table; write ``--out``."""
    args = parse_args(argv)
    if args.combine:
        return combine(args.combine, args.tiles)
    if not FLASH.exists():
        print(f"skipped: {FLASH} not found (the FLASH tiles live in ../shared/data)")
        return 0
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    results: dict[int, dict[str, dict[str, dict]]] = {}
    for seed in args.seeds:
        results[seed] = {}
        for tile in args.tiles:
            results[seed][tile] = run_tile(args, tile, seed)
            base = results[seed][tile]["base"]
            print(f"seed {seed} {tile:8s} base IF error {base['if_error_pp']:+.1f} pp", flush=True)
    models = ["base", *(f"finetuned {100 * f:g} %" for f in args.fractions), "dense half", "base, whole tile"]
    print(
        f"\nFLASH pathology fine-tuning: adaptation half {args.split}, scored on the "
        f"{'opposite' if args.split == 'auto' else OPPOSITE[args.split]} half; "
        f"base {args.base_steps} steps (border w0 {args.base_border_w0:g}), fine-tuning {args.finetune_steps} steps x {args.batch_size} x "
        f"{args.patch_size}^2 px at {args.mpp} um/px; dense half from {args.upper_init}; seeds {args.seeds}\n"
    )
    summary = report(results, models)
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    print(f"total {wall:.0f} s wall, {cpu:.0f} s CPU")
    if args.out:
        payload = {"args": vars(args), "per_seed": results, "pooled": summary, "wall_s": wall, "cpu_s": cpu}
        Path(args.out).write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
