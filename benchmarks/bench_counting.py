"""Counting points: coverage, width and error of each design x estimator, by simulating the pathologist.

What ships is what is measured: every draw places points with :func:`histoseg.sampling.design.new_design`
on the counting frame :func:`histoseg.sampling.frame.frame_from_label_map` makes from the model's
label map (as ``histoseg sample`` does), the simulated pathologist classifies each point with the
reference class under it, and :func:`histoseg.report.estimates.slide_point_estimates` (what
``quantify --points`` runs) gives every estimator and the headline. Per source, design, estimator and
n: coverage of the 95 % interval of the true interstitial fraction, mean half-width, mean absolute
error and mean signed error (bias) of the estimate, over ``--draws`` draws.

Sources (``--sources``):

- ``flash``: the six FLASH mouse-kidney PAS tiles (Bouteldja et al., JASN 2021; AGPL, read from
  ../shared/data), each scored by the U-Net trained on the other five with the budget of
  ``configs/flash.yaml`` (leave-one-tile-out; trained once per seed and cached in ``--cache``;
  about 7 min per tile on two CPU cores). Truth: the tile's dense reference.
- ``synthetic``: slides of :mod:`histoseg.synthetic` (exact truth), scored by a per-pixel colour
  classifier fitted on another slide (``benchmarks/bench_intervals.py``'s ``ColourModel``).

The interval must cover the true fraction of the whole reference (not of the frame): a frame that
left tissue out would show here as bias.

Cross-fitted fine-tuning (``--finetune``, FLASH only): per tile and seed, a stratified sample of
``--finetune-n`` points is classified by the simulated pathologist and split into two folds
(:func:`histoseg.sampling.design.crossfit_folds`); the tile's leave-one-tile-out model is
fine-tuned on each fold's complement (label kind ``points``, the recipe of
``configs/kidney_scribbles.yaml``: CE + CRF 0.1, lr 5e-4 cosine, ``--finetune-steps`` steps), and
the fold models give cross-fitted PPI (each point scored by the model that never saw it;
Zrnic & Candès 2024). Reported: the model-only interstitial-fraction error before (base) and after
(mean of the fold models), and the half-width of PPI from the base against cross-fitted PPI.

Usage:
    python benchmarks/bench_counting.py --quick                       # smoke run (seconds)
    python benchmarks/bench_counting.py --finetune --seeds 0,1,2      # cross-fitted fine-tuning (FLASH)
    python benchmarks/bench_counting.py --sources flash,synthetic --draws 500 --json counting.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import harness
import numpy as np

from histoseg.report.counting import CountedSlide
from histoseg.report.estimates import slide_point_estimates
from histoseg.sampling.design import new_design
from histoseg.sampling.estimators import prediction_powered
from histoseg.sampling.frame import frame_from_label_map

ROOT = Path(__file__).resolve().parents[1]
FLASH = ROOT.parent / "shared" / "data" / "flash-mouse-pas"
CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]
BG, INT, TUB, GLOM = 0, 1, 2, 3
DESIGNS = ("random", "grid", "stratified")
VARIANTS = (("random", "matern"), ("grid", "matern"), ("grid", "random"), ("stratified", "matern"))
"""Design x grid variance estimator simulated (grid points also with the random-points variance)."""
FLASH_MPP = 0.34


def true_fraction(labels: np.ndarray) -> float:
    """The interstitial fraction of a reference label map (255 = unlabelled left out), by histoseg.report."""
    return harness.interstitial_fraction(labels, CLASSES)


def flash_sources(seed: int, cache: Path, tiles: list[str]) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """``(name, reference, leave-one-tile-out prediction, slide mpp)`` per tile (trains what is not cached)."""
    out = []
    for tile in tiles:
        path = cache / f"{tile}_s{seed}.npz"
        if not path.exists():
            import torch

            args = argparse.Namespace(
                steps=300, batch_size=8, patch_size=192, mpp=0.5, lr=0.002, encoder="tu-tf_efficientnet_lite0",
                encoder_weights="auto", loss="ce", border_w0=0.0, border_sigma_um=2.5, class_weighting="none",
                task="unet", labels="dense", scribble_fraction=0.03, brush_um=2.0, stroke_length=40.0,
                scribble_method="skeleton", grow_um=0.0, grow_classes="", epochs=10, stain_jitter=0.0,
                regularizer="none", regularizer_weight=0.1, seed=seed, growth_stats=[],
            )  # configs/flash.yaml's budget and recipe
            with tempfile.TemporaryDirectory() as tmp:
                net, wall, _, _ = harness.train_fold(args, tile, Path(tmp))
            pred = harness.predict_tile(net, tile, 0.5)
            cache.mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), cache / f"{tile}_s{seed}.pt")
            np.savez_compressed(path, pred=pred, ref=harness.reference(tile))
            print(f"trained {tile} seed {seed} in {wall:.0f} s", file=sys.stderr)
        data = np.load(path)
        out.append((tile, data["ref"], data["pred"], FLASH_MPP))
    return out


def synthetic_sources(count: int, size: tuple[int, int]) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """Synthetic slides with exact truth, each scored by a colour model fitted on the next slide."""
    slides = harness.synthetic_slides(count + 1, size)
    out = []
    for k in range(count):
        _, image, truth = slides[k]
        _, train_image, train_truth = slides[k + 1]
        model = harness.ColourModel().fit([train_image], [train_truth])
        out.append((f"synthetic-{k}", truth, model.predict(image).astype(np.uint8), 0.5))
    return out


def simulate(
    name: str, ref: np.ndarray, pred: np.ndarray, mpp: float, ns: list[int], draws: int, seed: int,
    margin_um: float = 50.0,
) -> list[dict[str, Any]]:
    """Every design x n x estimator on one source: coverage, half-width, errors."""
    h, w = pred.shape
    truth = true_fraction(ref)
    pred_ns = SimpleNamespace(
        classes=CLASSES, counts=np.bincount(pred.ravel(), minlength=len(CLASSES))[: len(CLASSES)],
        shape=(h, w), mpp=mpp, slide_mpp=mpp, unlabelled_pixels=0,
    )
    margin = max(1, round(margin_um / mpp))
    frames = {
        kind: frame_from_label_map(
            pred, (1.0, 1.0), (w, h), CLASSES, BG, strata="class+edge" if kind == "stratified" else "none",
            margin_cells=margin,
        )
        for kind in DESIGNS
    }
    model_if = true_fraction(pred)
    rows = []
    rng = np.random.default_rng(seed)
    for kind, grid_variance in VARIANTS:
        for n in ns:
            acc: dict[str, list[tuple[float, float, float]]] = {}
            points = []
            for _ in range(draws):
                design = new_design(name, kind, frames[kind], n=n, seed=int(rng.integers(2**31)))
                x, y = design.x, design.y
                label = ref[np.minimum(y.astype(int), h - 1), np.minimum(x.astype(int), w - 1)].astype(np.uint8)
                label[label == 255] = 4  # unlabelled reference pixels: 'other' (not in the three compartments)
                counted = CountedSlide(design, list(design.ids), x, y, label, 1, 0, [])
                result = slide_point_estimates(counted, pred_ns, pred, [], BG, grid_variance=grid_variance)
                assert result is not None
                points.append(len(design.ids))
                for key, est in result["estimators"].items():
                    acc.setdefault(key, []).append((est["estimate"], est["ci_low"], est["ci_high"]))
                if "estimate" in result:
                    head = result["estimate"]
                    acc.setdefault("headline", []).append((head["if_estimate"], head["if_ci_low"], head["if_ci_high"]))
                if kind != "stratified":  # PPI++ (power-tuned), an ablation: not a headline candidate
                    f = pred[np.minimum(y.astype(int), h - 1), np.minimum(x.astype(int), w - 1)]
                    a, b = (label == INT).astype(float), np.isin(label, [INT, TUB, GLOM]).astype(float)
                    fa, fb = (f == INT).astype(float), np.isin(f, [INT, TUB, GLOM]).astype(float)
                    share = pred_ns.counts / pred_ns.counts.sum()
                    est = prediction_powered(
                        counted.sample(grid_variance), a, b, fa, fb, float(share[INT]), float(share[[INT, TUB, GLOM]].sum()),
                        power_tuned=True,
                    )
                    acc.setdefault("PPI++", []).append((est.estimate, est.ci_low, est.ci_high))
            for key, values in acc.items():
                v = np.array(values, dtype=float)
                ok = np.isfinite(v[:, 0])
                e, lo, hi = v[ok, 0], v[ok, 1], v[ok, 2]
                rows.append(
                    {
                        "source": name, "design": kind if kind != "grid" else f"grid ({grid_variance})",
                        "estimator": key, "n": n,
                        "points_mean": float(np.mean(points)), "draws": int(ok.sum()), "truth": truth,
                        "model_if": model_if,
                        "coverage": float(np.mean((lo <= truth) & (truth <= hi))) if ok.any() else math.nan,
                        "halfwidth": float(np.mean((hi - lo) / 2)) if ok.any() else math.nan,
                        "mae": float(np.mean(np.abs(e - truth))) if ok.any() else math.nan,
                        "bias": float(np.mean(e - truth)) if ok.any() else math.nan,
                    }
                )
    return rows


def finetune_fold(tile: str, state: dict, xs: np.ndarray, ys: np.ndarray, labels: np.ndarray, seed: int,
                  steps: int, folder: Path) -> np.ndarray:
    """The LOTO model of ``tile`` fine-tuned on classified points (level-0 px of the 516 centre); its map."""
    import lightning as L

    from histoseg.datamodules import SlideDataModule
    from histoseg.labels.points import PointSet, write_points_csv
    from histoseg.tasks import SegmentationTask
    from histoseg.training_options import group_options

    L.seed_everything(seed, verbose=False)
    points = folder / f"{tile}.points.csv"
    write_points_csv(PointSet(xs + 62.0, ys + 62.0, labels.astype(np.uint8)), points, CLASSES)
    table = folder / "slides.csv"
    image = harness.FLASH / "images" / f"{tile}_01.png"
    table.write_text(f"slide,labels,kind,split,mpp\n{image},{points},points,train,{harness.SLIDE_MPP}\n")
    dm = SlideDataModule(**group_options(
        slides=str(table), classes=CLASSES, mpp=0.5, patch_size=192, batch_size=8, patches_per_epoch=steps * 8,
        val_patches=1, class_balanced=True, border_w0=0.0, num_workers=0, seed=seed,
    ))
    task = SegmentationTask(
        classes=CLASSES, mpp=0.5, patch_size=192, arch="unet", encoder="tu-tf_efficientnet_lite0",
        encoder_weights=None, decoder_channels=[128, 64, 32, 24, 16], lr=0.0005, scheduler="cosine",
        channels_last=True, loss="ce", regularizer="crf", regularizer_weight=0.1,
    )
    task.network.load_state_dict(state)
    trainer = harness.quiet_trainer(max_epochs=1)
    trainer.fit(task, dm)
    return harness.predict_tile(task.network.eval(), tile, 0.5)


def finetune(tiles: list[str], seeds: list[int], cache: Path, n: int, steps: int, folds: int = 2) -> list[dict[str, Any]]:
    """Cross-fitted fine-tuning per tile and seed (see the module docstring)."""
    import torch

    from histoseg.report.estimates import FoldModel
    from histoseg.sampling.design import crossfit_folds

    rows = []
    for tile in tiles:
        ((name, ref, pred, mpp),) = flash_sources(0, cache, [tile])
        state = torch.load(cache / f"{tile}_s0.pt", weights_only=True)
        h, w = pred.shape
        frame = frame_from_label_map(pred, (1.0, 1.0), (w, h), CLASSES, BG, strata="class+edge",
                                     margin_cells=max(1, round(50 / mpp)))
        pred_ns = SimpleNamespace(classes=CLASSES, counts=np.bincount(pred.ravel(), minlength=len(CLASSES)),
                                  shape=(h, w), mpp=mpp, slide_mpp=mpp, unlabelled_pixels=0)
        truth = true_fraction(ref)
        for seed in seeds:
            design = new_design(tile, "stratified", frame, n=n, seed=1000 + seed)
            label = ref[np.minimum(design.y.astype(int), h - 1), np.minimum(design.x.astype(int), w - 1)]
            label = np.where(label == 255, 4, label).astype(np.uint8)
            fold_of = crossfit_folds(design, folds, seed)
            fold = np.array([fold_of[i] for i in design.ids])
            models = []
            start = time.process_time()
            for k in range(folds):
                train = fold != k
                with tempfile.TemporaryDirectory() as tmp:
                    tuned = finetune_fold(tile, state, design.x[train], design.y[train], label[train], seed, steps, Path(tmp))
                models.append(FoldModel(tuned, {design.ids[i] for i in np.flatnonzero(~train)}))
            cpu = time.process_time() - start
            counted = CountedSlide(design, list(design.ids), design.x, design.y, label, 1, 0, [])
            result = slide_point_estimates(counted, pred_ns, pred, [], BG, folds=models)
            assert result is not None
            est = result["estimators"]
            tuned_if = float(np.mean([true_fraction(m.labels) for m in models]))
            row = {
                "tile": tile, "seed": seed, "n": len(design.ids), "truth": truth,
                "base_if_error": true_fraction(pred) - truth, "tuned_if_error": tuned_if - truth,
                "base_agreement": float(np.mean(pred[ref != 255] == ref[ref != 255])),
                "tuned_agreement": float(np.mean([np.mean(m.labels[ref != 255] == ref[ref != 255]) for m in models])),
                "fit_cpu_s": cpu,
            }
            for key in ("stratified", "PPI", "cross-fitted PPI"):
                if key in est:
                    row[key] = {k: est[key][k] for k in ("estimate", "ci_low", "ci_high", "halfwidth")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def pooled(rows: list[dict[str, Any]], family: str) -> list[dict[str, Any]]:
    """Mean over the sources of a family (flash / synthetic) per design x estimator x n, and the worst coverage."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        if r["source"].startswith("synthetic") == (family == "synthetic"):
            groups.setdefault((r["design"], r["estimator"], r["n"]), []).append(r)
    out = []
    for (design, estimator, n), rs in sorted(groups.items()):
        out.append(
            {
                "family": family, "design": design, "estimator": estimator, "n": n,
                "points": float(np.mean([r["points_mean"] for r in rs])),
                "coverage": float(np.mean([r["coverage"] for r in rs])),
                "worst_coverage": float(np.min([r["coverage"] for r in rs])),
                "halfwidth": float(np.mean([r["halfwidth"] for r in rs])),
                "mae": float(np.mean([r["mae"] for r in rs])),
                "sources": len(rs),
            }
        )
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| source | design | estimator | n | points | coverage (worst tile) | mean half-width (pp) | MAE (pp) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['family']} | {r['design']} | {r['estimator']} | {r['n']} | {r['points']:.0f} | "
            f"{r['coverage']:.3f} ({r['worst_coverage']:.3f}) | {100 * r['halfwidth']:.1f} | {100 * r['mae']:.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default="flash,synthetic")
    parser.add_argument("--ns", default="25,50,100,200")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="seed of the LOTO models (flash) and of the draws")
    parser.add_argument("--tiles", default="adenine,alport,healthy,iri,ntn,uuo")
    parser.add_argument("--synthetic", type=int, default=4, help="number of synthetic slides")
    default_cache = str(Path(tempfile.gettempdir()) / "histoseg-bench-counting")
    parser.add_argument("--cache", default=os.environ.get("HISTOSEG_BENCH_CACHE", default_cache))
    parser.add_argument("--quick", action="store_true", help="smoke run: synthetic only, 2 slides, n=50, 20 draws")
    parser.add_argument("--json", default=None)
    parser.add_argument("--finetune", action="store_true", help="cross-fitted fine-tuning experiment (FLASH)")
    parser.add_argument("--seeds", default="0,1,2", help="--finetune: seeds of the sample and the fine-tuning")
    parser.add_argument("--finetune-n", type=int, default=100, help="--finetune: points per tile")
    parser.add_argument("--finetune-steps", type=int, default=64, help="--finetune: steps per fold model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.finetune:
        if not FLASH.exists():
            print(f"finetune skipped: {FLASH} not found")
            return 0
        rows = finetune(args.tiles.split(","), [int(v) for v in args.seeds.split(",")], Path(args.cache),
                        args.finetune_n, args.finetune_steps)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return 0
    sources_wanted = args.sources.split(",")
    ns = [int(v) for v in args.ns.split(",")]
    draws, count, size = args.draws, args.synthetic, (768, 768)
    if args.quick:
        sources_wanted, ns, draws, count, size = ["synthetic"], [50], 20, 2, (384, 384)
    start = time.perf_counter()
    sources = []
    if "synthetic" in sources_wanted:
        sources += synthetic_sources(count, size)
    if "flash" in sources_wanted:
        if FLASH.exists():
            sources += flash_sources(args.seed, Path(args.cache), args.tiles.split(","))
        else:
            print(f"flash skipped: {FLASH} not found (the FLASH tiles live in ../shared/data)")
    rows: list[dict[str, Any]] = []
    for k, (name, ref, pred, mpp) in enumerate(sources):
        rows += simulate(name, ref, pred, mpp, ns, draws, args.seed * 1000 + k)
        print(f"{name}: truth {true_fraction(ref):.3f}, model {true_fraction(pred):.3f}, agreement "
              f"{np.mean(pred[ref != 255] == ref[ref != 255]):.3f}", file=sys.stderr)
    table = []
    for family in ("flash", "synthetic"):
        table += pooled(rows, family)
    print_table(table)
    print(f"({len(sources)} sources, {draws} draws each, {time.perf_counter() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "pooled": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
