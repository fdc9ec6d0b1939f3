"""Recipe table for the FLASH leave-one-tile-out runs: one row per setting, mean ± sd over seeds.

Reads the ``--json`` files of ``bench_flash.py`` (one seed each, the dense variant) and the
``--out`` files of ``bench_pathology_finetune.py`` (its ``base, whole tile`` model: the dense base
trained on the other five tiles and scored on the whole held-out tile, i.e. leave-one-tile-out
of ``configs/flash.yaml``'s recipe). Per seed: Dice per class from the confusion matrix pooled
over the six held-out tiles, the mean absolute and the mean signed interstitial-fraction error
(pp) over tiles, and the mean training CPU seconds per fold; then mean and sample standard
deviation (n - 1) over seeds. A second table gives each tile's signed error, averaged over seeds.

Usage::

    python benchmarks/recipe_table.py \\
        --row "configs/flash.yaml" pft_adenine.json pft_iri.json \\
        --row "CE + Dice, sqrt-inverse-frequency weights" recipe_cedice_s0.json recipe_cedice_s1.json ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from harness import SCORED, dice  # one Dice for both tables: histoseg's

PFT_MODEL = "base, whole tile"


def seeds_of(path: Path) -> dict[int, dict[str, dict]]:
    """``{seed: {tile: {"confusion", "error_pp", "cpu_s"}}}`` from either script's JSON."""
    payload = json.loads(path.read_text())
    out: dict[int, dict[str, dict]] = {}
    if "per_seed" in payload:  # bench_pathology_finetune.py
        for seed, tiles in payload["per_seed"].items():
            out[int(seed)] = {
                tile: {
                    "confusion": np.array(models[PFT_MODEL]["confusion"]),
                    "error_pp": models[PFT_MODEL]["if_error_pp"],
                    "cpu_s": models[PFT_MODEL]["train_cpu_s"],
                }
                for tile, models in tiles.items()
            }
        return out
    result = payload["results"]["dense"]  # bench_flash.py: one seed, confusion pooled over folds
    tiles = {
        t["tile"]: {"confusion": None, "error_pp": t["error_pp"], "cpu_s": t["train_cpu_s"]}
        for t in result["tiles"]
    }
    tiles["_pooled"] = {"confusion": np.array(result["confusion"])}
    return {int(payload["args"]["seed"]): tiles}


def per_seed_metrics(tiles: dict[str, dict]) -> dict[str, float]:
    """Pooled Dice, mean |IF error|, mean signed IF error and CPU s per fold of one seed."""
    pooled = tiles.get("_pooled", {}).get("confusion")
    folds = {k: v for k, v in tiles.items() if k != "_pooled"}
    if pooled is None:
        pooled = np.sum([v["confusion"] for v in folds.values()], axis=0)
    errors = np.array([v["error_pp"] for v in folds.values()])
    return {c: d for c, d in dice(pooled).items() if c in SCORED} | {
        "mae": float(np.mean(np.abs(errors))),
        "signed": float(np.mean(errors)),
        "cpu_s": float(np.mean([v["cpu_s"] for v in folds.values()])),
        "folds": len(folds),
    }


def cell(values: list[float], fmt: str) -> str:
    mean = float(np.mean(values))
    if len(values) < 2:
        return format(mean, fmt)
    return f"{mean:{fmt}} ({float(np.std(values, ddof=1)):{fmt.lstrip('+')}})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--row", nargs="+", action="append", required=True, metavar=("NAME", "JSON"))
    args = parser.parse_args(argv)
    head = (
        "| setting | seeds | "
        + " | ".join(SCORED)
        + " | mean \\|IF error\\| (pp) | signed IF error (pp) | CPU s per fold |"
    )
    lines = [head, "|" + "---|" * (len(SCORED) + 6)]
    tile_lines: list[str] = []
    tile_names: list[str] = []
    for name, *paths in args.row:
        runs: dict[int, dict[str, dict]] = {}
        for path in paths:
            for seed, tiles in seeds_of(Path(path)).items():
                runs.setdefault(seed, {}).update(tiles)
        metrics = [per_seed_metrics(runs[s]) for s in sorted(runs)]
        folds = {m["folds"] for m in metrics}
        if folds != {6}:
            print(f"warning: {name}: folds per seed {sorted(folds)} (expected 6)", file=sys.stderr)
        cells = [cell([m[c] for m in metrics], ".3f") for c in SCORED]
        cells += [
            cell([m[k] for m in metrics], f)
            for k, f in (("mae", ".1f"), ("signed", "+.1f"), ("cpu_s", ".1f"))
        ]
        lines.append(f"| {name} | {','.join(map(str, sorted(runs)))} | " + " | ".join(cells) + " |")
        tiles = sorted({t for r in runs.values() for t in r if t != "_pooled"})
        tile_names = tile_names or tiles
        means = [np.mean([runs[s][t]["error_pp"] for s in runs if t in runs[s]]) for t in tile_names]
        tile_lines.append(f"| {name} | " + " | ".join(f"{m:+.1f}" for m in means) + " |")
    print("\n".join(lines))
    print("\nSigned interstitial-fraction error per held-out tile (pp, mean over seeds):\n")
    print("| setting | " + " | ".join(tile_names) + " |")
    print("|" + "---|" * (len(tile_names) + 1))
    print("\n".join(tile_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
