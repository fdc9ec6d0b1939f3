"""Training on a cohort of whole slides: label memory, setup time cold/warm, loader cost (issue 30).

Builds (once, cached under ``<cache>/bench-training-cohort/``) a synthetic whole slide of
``--width x --height`` px at 0.5 um/px: one synthetic slide of ``--base`` size (exact dense labels,
:mod:`histoseg.synthetic`) tiled into a real pyramidal JPEG TIFF; the cohort's slides are hard
links to it (one slide file, many slide-table rows: the slide reader opens each row's path). Each
slide gets its own real QuPath GeoJSON scribbles: strokes simulated from the base labels
(``simulate_scribbles``, fraction ``--fraction``) on a random ``--keep`` of the base tiles (seed =
slide index); the points run gets grid points every 20 um on the same tiles.

For each cohort (1, 10, 50 slides with scribbles; one points run), each in a fresh process:

- ``setup cold``: the prepared-labels cache emptied, ``SlideDataModule.setup("fit")`` plus the
  training loader (class positions): seconds per slide and peak RSS;
- ``setup warm``: the same again, reading the cache;
- ``fit``: warm setup, then ``--steps`` Lightning training steps of the shipped U-Net
  (configs/kidney.yaml's model, random init) on 256-px patches at 1 um/px, batch 8, then the same
  steps on the same patches collected beforehand as tensors: peak RSS of the fit and the ratio of
  steps/s (cached tensors / slide loader; target <= 1.1).

Usage:
    OMP_NUM_THREADS=1 flock /tmp/histoseg-cpu.lock python benchmarks/bench_training_cohort.py
    python benchmarks/bench_training_cohort.py --quick      # tiny smoke run (tests/test_bench_training_cohort.py)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]
MPP = 0.5
TRAIN_MPP = 1.0
BRUSH_UM = 3.0


class TiledImage:
    """A (H, W[, 3]) uint8 array-like repeating ``base`` (sliced lazily by the TIFF writer)."""

    def __init__(self, base: np.ndarray, height: int, width: int) -> None:
        self.base = base
        self.shape = (height, width, *base.shape[2:])
        self.dtype = base.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = key
        r = np.arange(rows.start, min(rows.stop, self.shape[0])) % self.base.shape[0]
        c = np.arange(cols.start, min(cols.stop, self.shape[1])) % self.base.shape[1]
        return self.base[np.ix_(r, c)]


def build_data(
    root: Path, width: int, height: int, base: tuple[int, int], n: int, fraction: float, keep: float
) -> Path:
    """Generate (once) the big slide, ``n`` hard links and per-slide scribbles and points; the folder."""
    import tifffile

    from histoseg.io.tiff import write_pyramid_tiff
    from histoseg.labels.points import PointSet, write_points_csv
    from histoseg.labels.scribbles import write_scribbles_geojson
    from histoseg.labels.simulate import grid_points_from_mask, simulate_scribbles
    from histoseg.synthetic import generate_slide

    bw, bh = base
    folder = root / f"{width}x{height}-base{bw}x{bh}-mpp{MPP:g}"
    slide = folder / f"slide-{width}x{height}.tif"
    if not slide.exists():
        made = generate_slide(folder / "base", "base", seed=0, width=bw, height=bh, mpp=MPP)
        image = tifffile.imread(made.image_path, key=0)
        t0 = time.perf_counter()
        write_pyramid_tiff(slide, TiledImage(image, height, width), MPP)
        print(
            f"wrote {slide} ({slide.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    labels = tifffile.imread(folder / "base" / "base.labels.tif", key=0)
    strokes_path = folder / f"strokes-f{fraction:g}.json"
    if not strokes_path.exists():
        brush = max(1, round(BRUSH_UM / MPP))
        strokes = simulate_scribbles(labels, fraction=fraction, brush_px=brush, seed=0)
        strokes_path.write_text(json.dumps([[int(c), np.asarray(xy).tolist()] for c, xy in strokes]))
    strokes = [(c, np.asarray(xy, np.float64)) for c, xy in json.loads(strokes_path.read_text())]
    points = grid_points_from_mask(labels, spacing_px=20.0 / MPP, ignore=(255,))
    tiles = [(ty, tx) for ty in range(height // bh) for tx in range(width // bw)]
    (folder / "links").mkdir(exist_ok=True)
    for i in range(n):
        link = folder / "links" / f"s{i:03d}.tif"
        if not link.exists():
            os.link(slide, link)
        scribbles = folder / f"s{i:03d}-f{fraction:g}-k{keep:g}.scribbles.geojson"
        pts = folder / f"s{i:03d}-k{keep:g}.points.csv"
        if scribbles.exists() and pts.exists():
            continue
        rng = np.random.default_rng(i)
        chosen = [tiles[k] for k in np.flatnonzero(rng.random(len(tiles)) < keep)] or [tiles[0]]
        shifted = [(c, xy + np.array([tx * bw, ty * bh])) for ty, tx in chosen for c, xy in strokes]
        write_scribbles_geojson(shifted, scribbles, CLASSES, brush_px=BRUSH_UM / MPP)
        xs = np.concatenate([points.x + tx * bw for ty, tx in chosen])
        ys = np.concatenate([points.y + ty * bh for ty, tx in chosen])
        write_points_csv(PointSet(x=xs, y=ys, label=np.tile(points.label, len(chosen))), pts, CLASSES)
    return folder


def write_table(folder: Path, n: int, kind: str, fraction: float, keep: float) -> Path:
    """Slide table of the first ``n`` slides with labels of ``kind`` (all split=train)."""
    table = folder / f"cohort-{n}-{kind}.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "labels", "kind", "split"])
        for i in range(n):
            labels = (
                f"s{i:03d}-f{fraction:g}-k{keep:g}.scribbles.geojson"
                if kind == "scribbles"
                else f"s{i:03d}-k{keep:g}.points.csv"
            )
            writer.writerow([f"links/s{i:03d}.tif", labels, kind, "train"])
    return table


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _datamodule(table: Path, batch: int) -> Any:
    from histoseg.datamodules import SlideDataModule
    from histoseg.training_options import LabelOptions, PatchSampling

    return SlideDataModule(
        slides=str(table),
        mpp=TRAIN_MPP,
        labels=LabelOptions(brush_um=BRUSH_UM),
        patches=PatchSampling(patch_size=256, batch_size=batch, patches_per_epoch=10**6, class_balanced=True),
        seed=0,
    )


def phase_setup(table: Path) -> dict[str, float]:
    """Setup of the fit datamodule and its training loader: seconds and peak RSS."""
    import logging

    logging.getLogger("histoseg").setLevel(logging.ERROR)
    dm = _datamodule(table, 8)
    t0 = time.perf_counter()
    dm.setup("fit")
    dm.train_dataloader()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "slides": len(dm._labelled["train"])}


def phase_fit(table: Path, steps: int, tiny: bool) -> dict[str, float]:
    """Warm setup, ``steps`` Lightning steps from the slides, then the same on collected tensors."""
    import logging

    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from histoseg.tasks import SegmentationTask

    logging.getLogger("histoseg").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    batch = 8
    model_args: dict[str, Any] = (
        {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 8]}
        if tiny
        else {"encoder": "tu-tf_efficientnet_lite0", "decoder_channels": [128, 64, 32, 24, 16]}
    )

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_batch_end(self, *args: Any) -> None:
            self.times.append(time.perf_counter())

    def fit(dm: Any) -> float:
        L.seed_everything(0, verbose=False)
        task = SegmentationTask(
            classes=CLASSES, mpp=TRAIN_MPP, patch_size=256, encoder_weights=None, **model_args
        )
        timer = Timer()
        trainer = L.Trainer(
            max_steps=steps + 1, limit_val_batches=0, accelerator="cpu", devices=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[timer], precision="32-true", num_sanity_val_steps=0,
        )  # fmt: skip
        trainer.fit(task, datamodule=dm)
        return steps / (timer.times[-1] - timer.times[0])  # steps 2..steps+1: the first warms up

    dm = _datamodule(table, batch)
    t0 = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - t0
    slide_rate = fit(dm)
    fit_rss = peak_rss_mb()
    dataset = dm.train_dataloader().dataset
    samples = [dataset[i] for i in range((steps + 1) * batch)]  # the patches of the steps above

    class Cached(type(dm)):  # type: ignore[misc]
        def train_dataloader(self) -> DataLoader[Any]:
            return DataLoader(samples, batch_size=batch, shuffle=False)

    cached = Cached(**{k: v for k, v in dm.hparams.items() if k != "synthetic"})
    cached._labelled, cached.class_weights = dm._labelled, dm.class_weights
    cached.setup = lambda stage=None: None  # type: ignore[method-assign]
    tensor_rate = fit(cached)
    return {
        "setup_s": setup_s,
        "fit_peak_rss_mb": fit_rss,
        "slide_steps_per_s": slide_rate,
        "tensor_steps_per_s": tensor_rate,
        "loader_ratio": tensor_rate / slide_rate,
    }


def run_phase(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run one phase in a fresh process; its JSON result."""
    out = subprocess.run(
        [sys.executable, __file__, *args], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=20000)
    parser.add_argument("--height", type=int, default=15000)
    parser.add_argument("--base", default="2000x1500", help="generated slide tiled into the big one (W x H)")
    parser.add_argument("--cohorts", default="1,10,50", help="scribble cohort sizes")
    parser.add_argument("--points", type=int, default=10, help="cohort size of the points run (0 = none)")
    parser.add_argument(
        "--fraction", type=float, default=0.03, help="scribbled fraction of each kept base tile"
    )
    parser.add_argument("--keep", type=float, default=0.2, help="fraction of base tiles scribbled per slide")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per fit")
    parser.add_argument(
        "--fit", default="1,10,50", help="cohort sizes whose fit is run (peak RSS, loader ratio)"
    )
    parser.add_argument("--root", default=None, help="data folder (default <cache>/bench-training-cohort)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--phase", choices=["setup", "fit"], help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase == "setup":
        print(json.dumps(phase_setup(Path(args.table))))
        return 0
    if args.phase == "fit":
        print(json.dumps(phase_fit(Path(args.table), args.steps, args.tiny)))
        return 0
    from histoseg.io.cache import default_cache_dir

    if args.quick:
        args.width, args.height, args.base = 1024, 768, "512x384"
        args.cohorts, args.points, args.steps, args.fit = "2", 0, 1, "2"
    bw, bh = (int(v) for v in args.base.split("x"))
    cohorts = [int(v) for v in args.cohorts.split(",")]
    fits = {int(v) for v in args.fit.split(",") if v}
    root = Path(args.root) if args.root else default_cache_dir() / "bench-training-cohort"
    n_max = max([*cohorts, args.points])
    t0 = time.perf_counter()
    folder = build_data(root, args.width, args.height, (bw, bh), n_max, args.fraction, args.keep)
    print(f"data: {folder} ({time.perf_counter() - t0:.0f} s)", flush=True)
    labels_cache = folder / "histoseg-cache"
    env = dict(
        os.environ, HISTOSEG_CACHE=str(labels_cache), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")
    )
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    runs = [(n, "scribbles") for n in cohorts] + ([(args.points, "points")] if args.points else [])
    rows = []
    for n, kind in runs:
        table = write_table(folder, n, kind, args.fraction, args.keep)
        shutil.rmtree(labels_cache, ignore_errors=True)
        cold = run_phase(["--phase", "setup", "--table", str(table)], env)
        warm = run_phase(["--phase", "setup", "--table", str(table)], env)
        row: dict[str, Any] = {"n": n, "kind": kind, "cold": cold, "warm": warm}
        if n in fits and kind == "scribbles":
            extra = ["--tiny"] if args.quick else []
            row["fit"] = run_phase(
                ["--phase", "fit", "--table", str(table), "--steps", str(args.steps), *extra], env
            )
        row["cache_mb"] = sum(f.stat().st_size for f in labels_cache.rglob("*") if f.is_file()) / 2**20
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    train_px = f"{args.width // 2} x {args.height // 2}"
    print(
        f"Slides {args.width} x {args.height} px at {MPP} um/px, trained at {TRAIN_MPP} um/px ({train_px} px)"
    )
    header = [
        "slides", "labels", "setup cold s/slide", "setup warm s/slide", "cold/warm", "setup peak RSS MB",
        "fit peak RSS MB", "steps/s slides", "steps/s tensors", "loader ratio", "cache MB",
    ]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cold, warm, fit = row["cold"], row["warm"], row.get("fit")
        cells = [
            str(row["n"]),
            row["kind"],
            f"{cold['seconds'] / row['n']:.3f}",
            f"{warm['seconds'] / row['n']:.3f}",
            f"{cold['seconds'] / warm['seconds']:.1f}x",
            f"{max(cold['peak_rss_mb'], warm['peak_rss_mb']):.0f}",
        ]
        if fit:
            cells += [f"{fit['fit_peak_rss_mb']:.0f}", f"{fit['slide_steps_per_s']:.3f}"]
            cells += [f"{fit['tensor_steps_per_s']:.3f}", f"{fit['loader_ratio']:.3f}"]
        else:
            cells += ["-"] * 4
        cells.append(f"{row['cache_mb']:.1f}")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
