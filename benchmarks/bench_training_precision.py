"""Does bf16 mixed precision train the shipped kidney U-Net as well as fp32, and how much faster?

For each training precision (Lightning ``trainer.precision``) and seed, the shipped config is fit
exactly as the README says (``python -m histoseg fit --config CONFIG``, in a fresh process, with
``--trainer.precision P --seed_everything S`` and its own output folder). Each run's best
checkpoint (the one the config's ``ModelCheckpoint`` keeps besides ``last.ckpt``) is then scored on held-out synthetic
slides that no run trained on (``histoseg.synthetic.generate_slide``, seeds 1000, 1001, ...;
the default 3072 x 2304 px at 0.5 um/px, exact labels; ``--hue-shift``, ``--saturation`` and
``--fibrosis`` give them a config's target setting), with the same inference for every run
(``predict_slide`` at fp32, so only the training precision differs):

- Dice per class, label map against the exact labels subsampled to the label map's grid;
- signed interstitial-fraction error, ``A_int / (A_int + A_tub + A_glom)`` of the label map minus
  that of the exact labels (percentage points), pooled over the held-out slides;
- wall and CPU seconds of the fit (the fit process and its data-loader workers), after one
  untimed warm-up fit that generates the config's synthetic training slides into the cache.

Prints one row per run, then mean +- sd over seeds per precision, and the ratio of fit times.

Usage::

    python benchmarks/bench_training_precision.py                      # kidney.yaml, 32-true vs bf16-mixed, seeds 0 1 2
    python benchmarks/bench_training_precision.py --quick              # smoke run: tiny fits and slides
    python benchmarks/bench_training_precision.py --config configs/kidney_scribbles.yaml \
        --hue-shift 25 --saturation 1.3 --fibrosis 0.6 --data-seed --set model.init_args.init_checkpoint=BASE.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import harness
import numpy as np

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]
SCORED = ["interstitium", "tubules", "glomeruli", "other"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def chosen_checkpoint(out: Path) -> Path:
    """The checkpoint the config's ``ModelCheckpoint`` kept (its best), else ``last.ckpt``."""
    kept = [p for p in out.glob("**/*.ckpt") if not p.name.startswith("last")]
    found = kept or list(out.glob("**/last*.ckpt"))
    if not found:
        sys.exit(f"error: {out}: the fit wrote no checkpoint; give a config with a ModelCheckpoint")
    return sorted(found, key=os.path.getmtime)[-1]


def fit_command(config: str, out: Path, *options: str) -> list[str]:
    """``python -m histoseg fit --config CONFIG`` into ``out``, quiet, with ``options`` appended."""
    return [sys.executable, "-m", "histoseg", "fit", "--config", config, "--trainer.default_root_dir", str(out),
            "--trainer.enable_progress_bar", "false", *options]  # fmt: skip


def fit(
    config: str, precision: str, seed: int, root: Path, extra: list[str], data_seed: bool = False
) -> dict:
    """One ``histoseg fit`` in a fresh process; its best checkpoint, wall and CPU seconds."""
    out = root / f"{precision}-s{seed}"
    if (out / "fit.json").exists():
        return json.loads((out / "fit.json").read_text())  # resumable: a finished run is kept
    cmd = fit_command(config, out, "--seed_everything", str(seed), "--trainer.precision", precision, *extra)
    if data_seed:  # the patch draws follow the seed too (a fine-tune from a checkpoint has no random init)
        cmd += ["--data.init_args.seed", str(seed)]
    cpu0, start = children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu0
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    best = chosen_checkpoint(out)
    record = {"precision": precision, "seed": seed, "checkpoint": str(best), "wall": wall, "cpu": cpu}
    (out / "fit.json").write_text(json.dumps(record))
    return record


def held_out(root: Path, n: int, quick: bool, hue: float, saturation: float, fibrosis: float) -> list:
    """``n`` held-out slides (seeds 1000, 1001, ...) in the given stain and pathology setting."""
    from histoseg.synthetic import StainParams, TissueParams
    from histoseg.synthetic.dataset import generate_slide

    size = {"width": 768, "height": 512} if quick else {}
    folder = root / f"held-out-hue{hue:g}-sat{saturation:g}-fib{fibrosis:g}"
    stain, tissue = StainParams(hue_shift=hue, saturation=saturation), TissueParams(fibrosis=fibrosis)
    return [
        generate_slide(folder, f"held-out-{i}", seed=1000 + i, stain=stain, tissue=tissue, **size)
        for i in range(n)
    ]


def score(checkpoint: str, slides: list) -> dict:
    """Dice per class and the pooled signed interstitial-fraction error (pp) on the held-out slides."""
    import tifffile
    import torch

    from histoseg.inference.checkpoint import load_predictor
    from histoseg.inference.options import InferenceOptions
    from histoseg.inference.predict import predict_slide
    from histoseg.report.areas import interstitial_fraction
    from histoseg.tasks import dice_iou_from_confusion

    predictor = load_predictor(checkpoint)
    classes = list(predictor.classes)
    assert classes == CLASSES, classes
    options = InferenceOptions(precision="32", workers=0)
    n = len(CLASSES)
    confusion = np.zeros((n + 1, n + 1), dtype=np.int64)  # last row/column: any other value (255)
    pred_counts = np.zeros(len(CLASSES))
    true_counts = np.zeros(len(CLASSES))
    for slide in slides:
        result = predict_slide(slide.image_path, predictor, options, progress=False)
        labels = np.asarray(result.labels)
        truth_full = tifffile.imread(slide.label_path)
        true_counts += np.bincount(truth_full.ravel(), minlength=len(CLASSES))[: len(CLASSES)]
        pred_counts += result.counts[: len(CLASSES)]
        step_y, step_x = truth_full.shape[0] / labels.shape[0], truth_full.shape[1] / labels.shape[1]
        rows = np.minimum(
            (np.arange(labels.shape[0]) * step_y + step_y / 2).astype(int), truth_full.shape[0] - 1
        )
        cols = np.minimum(
            (np.arange(labels.shape[1]) * step_x + step_x / 2).astype(int), truth_full.shape[1] - 1
        )
        truth = np.minimum(truth_full[np.ix_(rows, cols)], n).astype(np.int64)
        pred = np.minimum(labels, n).astype(np.int64)
        confusion += harness.confusion(truth, pred, n + 1)
    per_class = dice_iou_from_confusion(torch.from_numpy(confusion))[0][:n].tolist()
    dice = dict(zip(CLASSES, per_class, strict=True))
    error = 100 * (interstitial_fraction(pred_counts, CLASSES) - interstitial_fraction(true_counts, CLASSES))
    return {"dice": dice, "if_error_pp": error}


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {sd:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/kidney.yaml")
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--held-out", type=int, default=2, help="held-out synthetic slides to score on")
    parser.add_argument("--root", type=Path, default=Path("/tmp/histoseg-bench-training-precision"))
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch of 2 batches, tiny slides")
    parser.add_argument("--json", type=Path, help="also write every row to this JSON file")
    parser.add_argument(
        "--hue-shift", type=float, default=0.0, help="held-out slides: stain hue rotation (deg)"
    )
    parser.add_argument(
        "--saturation", type=float, default=1.0, help="held-out slides: stain saturation scale"
    )
    parser.add_argument(
        "--fibrosis", type=float, default=0.0, help="held-out slides: fibrosis setting in [0, 1]"
    )
    parser.add_argument(
        "--data-seed", action="store_true",
        help="also set data.seed (the patch draws) to the seed: needed when the weights come from a checkpoint",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="extra fit option for every run, e.g. model.init_args.init_checkpoint=base.ckpt",
    )  # fmt: skip
    args = parser.parse_args()
    extra: list[str] = []
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item}: give KEY=VALUE")
        extra += [f"--{key}", value]
    if args.quick:
        extra += ["--trainer.max_epochs", "1", "--data.init_args.patches.patches_per_epoch", "16",
                 "--data.init_args.patches.val_patches", "8", "--data.init_args.loader.num_workers", "0"]  # fmt: skip
    args.root.mkdir(parents=True, exist_ok=True)
    slides = held_out(args.root, args.held_out, args.quick, args.hue_shift, args.saturation, args.fibrosis)
    print(f"config {args.config}; held-out slides: {', '.join(s.name for s in slides)} "
          f"({slides[0].width} x {slides[0].height} px at {slides[0].mpp} um/px)")  # fmt: skip
    # Untimed warm-up fit: generates the config's synthetic training slides into the cache, so the
    # first timed fit does not pay for it.
    warm = fit_command(args.config, args.root / "warm-up", "--trainer.max_epochs", "1",
                       "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", *extra)  # fmt: skip
    subprocess.run(warm, capture_output=True, check=True)
    rows = []
    for seed in args.seeds:
        for precision in args.precisions:
            run = fit(args.config, precision, seed, args.root, extra, args.data_seed)
            run |= score(run["checkpoint"], slides)
            rows.append(run)
            dice = " ".join(f"{run['dice'][c]:.3f}" for c in SCORED)
            print(f"  {precision:10s} seed {seed}: Dice int/tub/glom/other {dice} | IF error "
                  f"{run['if_error_pp']:+.2f} pp | fit {run['wall']:.0f} s wall, {run['cpu']:.0f} s CPU", flush=True)  # fmt: skip
    print(f"\nmean +- sd over seeds {args.seeds}:")
    for precision in args.precisions:
        mine = [r for r in rows if r["precision"] == precision]
        dice = " / ".join(mean_sd([r["dice"][c] for r in mine]) for c in SCORED)
        print(f"  {precision:10s} Dice {dice} | IF error {mean_sd([r['if_error_pp'] for r in mine])} pp | "
              f"|IF error| {mean_sd([abs(r['if_error_pp']) for r in mine])} | "
              f"fit wall {mean_sd([r['wall'] for r in mine])} s, CPU {mean_sd([r['cpu'] for r in mine])} s")  # fmt: skip
    if len(args.precisions) == 2:
        a, b = ([r["wall"] for r in rows if r["precision"] == p] for p in args.precisions)
        print(
            f"  fit wall time {args.precisions[0]} / {args.precisions[1]}: {statistics.mean(a) / statistics.mean(b):.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
