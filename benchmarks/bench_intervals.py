"""Do the interstitial-fraction intervals hold? Coverage and width of point counting vs PPI.

For every slide with an exact reference, random point sets of n = 50, 100, 200, 400 points are
drawn uniformly over the slide many times; each set gives

- the point-count estimate (points in interstitium / points in interstitium, tubules, glomeruli)
  with its Wilson 95 % interval (:func:`histoseg.report.point_counts.wilson_interval`), and
- the prediction-powered estimate from the model's label map and the same points, with its
  delta-method 95 % interval (:func:`histoseg.report.ppi.ppi_interstitial_fraction`; the
  default guarded variance, and the textbook sample variance for comparison),

and the table gives, per source, model and n, how often each interval covers the exact value
and its mean width. Sources:

- ``synthetic``: slides of :mod:`histoseg.synthetic` (exact truth);
- ``flash``: the six FLASH mouse-kidney tiles (../shared/data; reference as truth), skipped
  with a reason when absent.

Models (cheap on purpose, so the benchmark runs in minutes on a CPU; PPI's validity does not
depend on the model, only its width does):

- ``colour``: a per-pixel Gaussian classifier on colour features (RGB blurred at 1 and 4 px),
  fitted on other slides than the one scored (leave-one-tile-out on FLASH, a separate seed on
  the synthetic slides); errors are spatially structured, as a real model's are;
- ``dilate-k``: the truth with tubules grown by k pixels into the interstitium, a controlled
  systematic bias (model-only interstitial fraction too low) that sweeps the model-point
  agreement and so shows where PPI becomes narrower than point counting.

Usage:
    python benchmarks/bench_intervals.py              # full run (about 2-4 min on 2 cores)
    python benchmarks/bench_intervals.py --quick      # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from harness import ColourModel, interstitial_fraction, reference, synthetic_slides
from scipy import ndimage

from histoseg import KIDNEY_CLASSES
from histoseg.report.point_counts import wilson_interval
from histoseg.report.ppi import ppi_interstitial_fraction

ROOT = Path(__file__).resolve().parents[1]
FLASH = ROOT.parent / "shared" / "data" / "flash-mouse-pas"
FLASH_NAMES = ["adenine", "alport", "healthy", "iri", "ntn", "uuo"]
BG, INT, TUB, GLOM, OTHER = range(5)
KIDNEY = np.array([INT, TUB, GLOM])


def dilate_tubules(truth: np.ndarray, k: int) -> np.ndarray:
    """Tubules grown by ``k`` px (a disk) into interstitium pixels only."""
    grown = ndimage.binary_dilation(truth == TUB, structure=disk(k))
    out = truth.copy()
    out[grown & (truth == INT)] = TUB
    return out


def disk(k: int) -> np.ndarray:
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    return (xx**2 + yy**2) <= k * k


def flash_tiles() -> list[tuple[str, np.ndarray, np.ndarray]]:
    from PIL import Image

    out = []
    for name in FLASH_NAMES:
        image = np.asarray(Image.open(FLASH / "images" / f"{name}_01.png").convert("RGB"))[62:578, 62:578]
        out.append((name, image, reference(name)))
    return out


def coverage(
    truth: np.ndarray, model: np.ndarray, n: int, reps: int, rng: np.random.Generator
) -> dict[str, float]:
    """Coverage and mean width of the point-count and PPI 95 % intervals over ``reps`` point sets."""
    exact = interstitial_fraction(truth)
    flat_t, flat_m = truth.ravel(), model.ravel()
    counts = np.bincount(flat_m, minlength=5)
    methods = ("points", "ppi", "ppi_textbook")
    cover = dict.fromkeys(methods, 0)
    width = dict.fromkeys(methods, 0.0)
    err = dict.fromkeys(methods, 0.0)
    used = 0
    for _ in range(reps):
        idx = rng.integers(0, flat_t.shape[0], n)
        ref, pred = flat_t[idx], flat_m[idx]
        k, denom = int(np.sum(ref == INT)), int(np.isin(ref, KIDNEY).sum())
        if denom == 0:
            continue
        used += 1
        low, high = wilson_interval(k, denom)
        cover["points"] += low <= exact <= high
        width["points"] += high - low
        err["points"] += abs(k / denom - exact)
        for name, variance in (("ppi", "wilson"), ("ppi_textbook", "sample")):
            est, _ = ppi_interstitial_fraction(counts, pred, ref, KIDNEY_CLASSES, variance=variance)
            cover[name] += est.ci_low <= exact <= est.ci_high
            width[name] += est.ci_high - est.ci_low
            err[name] += abs(est.estimate - exact)
    return {
        f"{m}_{what}": value / max(used, 1)
        for m in methods
        for what, value in (("cover", cover[m]), ("width", width[m]), ("abs_err", err[m]))
    }


def run_source(
    source: str,
    slides: list[tuple[str, np.ndarray, np.ndarray]],
    ns: list[int],
    reps: int,
    dilations: list[int],
    seed: int,
) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    models: dict[str, list[np.ndarray]] = {}
    if source == "flash":  # leave one tile out
        models["colour"] = [
            ColourModel()
            .fit(
                [s[1] for j, s in enumerate(slides) if j != i], [s[2] for j, s in enumerate(slides) if j != i]
            )
            .predict(slide[1])
            for i, slide in enumerate(slides)
        ]
    else:  # fitted on separate slides (other seeds)
        train = synthetic_slides_for_training(slides)
        fitted = ColourModel().fit([t[1] for t in train], [t[2] for t in train])
        models["colour"] = [fitted.predict(s[1]) for s in slides]
    for k in dilations:
        models[f"dilate-{k}"] = [dilate_tubules(s[2], k) for s in slides]
    rows = []
    for model_name, maps in models.items():
        agreement = float(np.mean([np.mean(m == s[2]) for m, s in zip(maps, slides, strict=True)]))
        bias = float(
            np.mean(
                [
                    interstitial_fraction(m) - interstitial_fraction(s[2])
                    for m, s in zip(maps, slides, strict=True)
                ]
            )
        )
        for n in ns:
            per_slide = [coverage(s[2], m, n, reps, rng) for m, s in zip(maps, slides, strict=True)]
            row: dict[str, object] = {
                "source": source,
                "model": model_name,
                "agreement": agreement,
                "model_if_bias_pp": 100 * bias,
                "n": n,
            }
            for key in per_slide[0]:
                row[key] = float(np.mean([p[key] for p in per_slide]))
            rows.append(row)
    return rows


_TRAINING_SIZE: tuple[int, int] = (1024, 768)


def synthetic_slides_for_training(slides: list[tuple[str, np.ndarray, np.ndarray]]) -> list:
    from histoseg.synthetic import render_slide

    slide = render_slide(seed=7, width=_TRAINING_SIZE[0], height=_TRAINING_SIZE[1])
    return [("train", slide.image, slide.labels)]


def print_table(rows: list[dict[str, object]]) -> None:
    header = (
        "| source | model | pixel agreement | model-only IF bias (pp) | n points | points: coverage | "
        "points: mean width | PPI: coverage | PPI: mean width | PPI narrower | textbook PPI: coverage | "
        "textbook PPI: mean width |"
    )
    print(header)
    print("|" + "|".join(["---"] * 12) + "|")
    for r in rows:
        print(
            f"| {r['source']} | {r['model']} | {r['agreement']:.3f} | {r['model_if_bias_pp']:+.1f} | {r['n']} | "
            f"{r['points_cover']:.3f} | {r['points_width']:.3f} | {r['ppi_cover']:.3f} | {r['ppi_width']:.3f} | "
            f"{'yes' if r['ppi_width'] < r['points_width'] else 'no'} | "
            f"{r['ppi_textbook_cover']:.3f} | {r['ppi_textbook_width']:.3f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000, help="random point sets per slide and n")
    parser.add_argument("--n-synthetic", type=int, default=4, help="synthetic slides scored")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(1536, 1152), help="synthetic slide width height"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", default="synthetic,flash", help="comma-separated: synthetic, flash")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 small slide, 20 reps, no FLASH")
    args = parser.parse_args(argv)
    ns = [50, 100, 200, 400]
    dilations = [1, 2, 4, 8]
    reps, n_syn, size = args.reps, args.n_synthetic, tuple(args.size)
    if args.quick:
        reps, n_syn, size, ns, dilations = 20, 1, (512, 384), [50, 200], [2]
    started = time.perf_counter()
    sources = ["synthetic"] if args.quick else args.sources.split(",")
    rows = []
    if "synthetic" in sources:
        rows += run_source("synthetic", synthetic_slides(n_syn, size), ns, reps, dilations, args.seed)
    if "flash" in sources:
        if FLASH.is_dir():
            rows += run_source("flash", flash_tiles(), ns, reps, dilations, args.seed + 1)
        else:
            print(f"flash: skipped ({FLASH} not found)")
    print_table(rows)
    ppi_cover = min(float(r["ppi_cover"]) for r in rows)
    print(f"\nminimum PPI coverage over all rows: {ppi_cover:.3f} (target >= 0.93)")
    print(f"reps per slide and n: {reps}; wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
