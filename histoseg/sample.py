"""``histoseg sample``: place counting points on each slide, for a pathologist to classify.

For every slide, from its label map (a ``quantify`` output folder, ``--results``) or from the slide
and a checkpoint (``--ckpt_path`` + ``--slides``, predicted here), this command writes into ``OUT``:

- ``<stem>.points.geojson``: unclassified, locked QuPath point annotations named ``p0001``...
  (QuPath: File > Import objects), in level-0 pixels;
- ``<stem>.points.csv``: the same points as ``id,x,y,class`` with an empty class column;
- ``<stem>.design.json``: the design record (:mod:`histoseg.sampling.design`): the counting
  frame (the model's tissue grown by ``--margin_um`` so that points also fall on glass and on
  tissue the model missed), its strata, every point and every round, which ``quantify --points``
  uses to pick the matching estimator.

Designs (``--design``): ``stratified`` (the default: strata from the model's label map, Neyman
allocation with at least 2 points per stratum), ``grid`` (systematic, random offset, spacing for
about ``--n`` points on the frame; efficient on real tissue but it can resonate with regularly
packed structures, see docs/intervals.md), ``random`` (uniform).

**Rounds.** Run again on the same ``OUT`` and every slide that already has a design gets a new
round: ``--n`` more points (a grid halves its spacing instead: it adds about as many points as it
has, or three times as many), none repeating an earlier one, written to
``<stem>.points.round<k>.geojson|csv``; the design record is updated last. A stratified round is
allocated from the counted points' own spread when the earlier rounds are classified.

Nothing is written before every slide has been checked: a points file in ``OUT`` that histoseg did
not write (no design beside it) stops the run with one ``error:`` line.

Example:
    histoseg sample --results results/ --out points/ --n 100 --seed 1
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from histoseg.errors import ConfigError, HistosegError
from histoseg.inference.options import InferenceOptions
from histoseg.inference.predictor import Predictor
from histoseg.io.files import ensure_writable_dir, safe_stem
from histoseg.io.text import write_slide_table
from histoseg.labels.counted_points import MARKER, UNCLASSIFIED, read_counted_points, write_counted_points
from histoseg.quantify import collect_slides
from histoseg.report.areas import read_label_level
from histoseg.report.counting import CountedSlide, design_path, load_counted_points, points_files
from histoseg.sampling.allocation import stratum_sd
from histoseg.sampling.design import (
    DESIGNS,
    SUFFIX,
    PointDesign,
    add_round,
    is_design_file,
    new_design,
    read_design,
    write_design,
)
from histoseg.sampling.frame import CountingFrame, StrataRule, frame_from_label_map

STRATA_RULES = ("class+edge", "class", "none")
MAX_FRAME_CELLS = 2048 * 2048
"""The frame raster is the finest label-map level with at most this many pixels."""


@dataclass
class _Source:
    """Where a slide's label map comes from."""

    slide: str  # file name
    stem: str
    labels: Path | None  # label map TIFF (a quantify output), or None: predict from ``path``
    path: Path | None  # the slide file (to predict)
    slide_size: tuple[int, int] | None
    label_mpp: float | None
    slide_mpp: float | None
    classes: list[str]
    background: int | None
    checkpoint: str | None


def _slide_seed(seed: int, stem: str, round_number: int) -> int:
    """A slide's and round's own seed, derived from ``--seed`` (slides never share offsets)."""
    digest = hashlib.sha256(f"{seed}:{stem}:{round_number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def sources_from_results(folder: Path) -> list[_Source]:
    """The slides of a ``quantify`` output folder whose status is ok, with their label maps.

    Raises:
        HistosegError: the folder is not a quantify output folder (no result files).
    """
    if not folder.is_dir():
        raise HistosegError(f"--results {folder}: not a folder; give the --out folder of 'histoseg quantify'")
    sources: list[_Source] = []
    markers = sorted(folder.glob(".*.result.json"))
    if not markers:
        raise HistosegError(
            f"--results {folder}: no quantify results in it; run 'histoseg quantify --out {folder}' first, "
            "or give --ckpt_path and --slides"
        )
    for marker in markers:
        try:
            with open(marker, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("status") != "ok":
            continue
        stem = str(data.get("stem") or "")
        labels = folder / f"{stem}.labels.tif"
        key = data.get("key") or {}
        if not stem or not labels.is_file():
            continue
        sources.append(
            _Source(
                slide=str(data.get("slide") or stem),
                stem=stem,
                labels=labels,
                path=None,
                slide_size=(int(data["slide_dimensions"][0]), int(data["slide_dimensions"][1])),
                label_mpp=float(data["label_mpp"]),
                slide_mpp=float(data["mpp"]),
                classes=[str(c) for c in key.get("classes") or []],
                background=key.get("background_class"),
                checkpoint=data.get("checkpoint_sha256"),
            )
        )
    if not sources:
        raise HistosegError(f"--results {folder}: no slide with status ok; fix the failed slides and rerun quantify")
    return sources


def _check_ours(out: Path, stem: str, next_round: int) -> None:
    """Refuse files histoseg sample would write that it did not write itself."""
    record = design_path(out, stem)
    if record.exists() and not is_design_file(record):
        raise HistosegError(
            f"{record}: exists and is not a design record written by 'histoseg sample'; "
            "move it away or choose another --out folder"
        )
    if not record.exists():
        taken = points_files(out, stem)
        if taken:
            raise HistosegError(
                f"{taken[0]}: exists and was not written by 'histoseg sample' (no {record.name} beside it); "
                "move it away or choose another --out folder"
            )
        return
    for path in _round_paths(out, stem, next_round):
        if path.exists() and not _unclassified_ours(path):
            raise HistosegError(
                f"{path}: exists and holds classified or foreign points; "
                "move it away (its round is not in the design record) and run again"
            )


def _unclassified_ours(path: Path) -> bool:
    """A points file from an interrupted ``sample`` run: only unclassified, named points."""
    try:
        points = read_counted_points(path, ["x"])
    except HistosegError:
        return False
    named = all(isinstance(n, str) and n.startswith("p") for n in points.names)
    if path.suffix.lower() == ".geojson":
        # Ours only if every feature carries the record at its fixed place, checked by type (a file
        # that merely contains the marker text somewhere is not).
        try:
            with open(path, encoding="utf-8") as handle:
                features = json.load(handle).get("features")
        except (OSError, ValueError, AttributeError):
            return False
        named = named and isinstance(features, list) and all(
            isinstance(f, dict)
            and isinstance(f.get("properties"), dict)
            and isinstance(f["properties"].get("histoseg"), dict)
            and f["properties"]["histoseg"].get("written_by") == MARKER
            for f in features
        )
    return named and bool((points.label == UNCLASSIFIED).all())


def _round_paths(out: Path, stem: str, number: int) -> list[Path]:
    suffix = "" if number == 1 else f".round{number}"
    return [out / f"{stem}.points{suffix}.geojson", out / f"{stem}.points{suffix}.csv"]


def _frame_of(source: _Source, predictor: Predictor | None, options: InferenceOptions | None,
              strata: StrataRule, margin_um: float, mpp: float | None) -> tuple[CountingFrame, dict[str, Any]]:
    """The counting frame of a slide from its label map (read, or predicted now)."""
    if source.labels is not None:
        level, (sx, sy), _ = read_label_level(source.labels, max_pixels=MAX_FRAME_CELLS)
        assert source.label_mpp and source.slide_mpp and source.slide_size
        k = source.label_mpp / source.slide_mpp
        size, classes, background = source.slide_size, source.classes, source.background
        label_mpp, checkpoint = source.label_mpp, source.checkpoint
    else:
        from histoseg.inference.predict import predict_slide

        assert predictor is not None and source.path is not None
        pred = predict_slide(source.path, predictor, options, mpp=mpp, progress=False)
        labels = pred.labels  # a memory map of an unlinked temporary file: gone when dropped
        assert labels is not None
        step = max(1, math.ceil(math.sqrt(labels.shape[0] * labels.shape[1] / MAX_FRAME_CELLS)))
        level = np.array(labels[::step, ::step])
        sx = sy = float(step)  # level pixel (i, j) = label pixels [i * step, (i + 1) * step)
        del labels
        k = pred.mpp / pred.slide_mpp
        size = (int(pred.slide_dimensions[0]), int(pred.slide_dimensions[1]))
        classes, background = list(pred.classes), predictor.background_class
        label_mpp, checkpoint = pred.mpp, predictor.checkpoint_sha256
        source.slide_mpp = pred.slide_mpp
    cell = (sx * k, sy * k)
    cell_um = max(cell) * (source.slide_mpp or 1.0)
    margin_cells = max(1, round(margin_um / cell_um)) if margin_um > 0 else 0
    frame = frame_from_label_map(level, cell, size, classes, background, strata=strata, margin_cells=margin_cells)
    origin = {
        "checkpoint_sha256": checkpoint,
        "classes": classes,
        "background_class": background,
        "label_mpp": label_mpp,
        "slide_mpp": source.slide_mpp,
        "strata_rule": strata,
        "margin_um": margin_um,
        "cell_um": cell_um,
    }
    return frame, origin


def _counted_sd(out: Path, stem: str, design: PointDesign, classes: Sequence[str]) -> np.ndarray | None:
    """Per-stratum spread of the counted points' linearised ratio (None before any complete round)."""
    try:
        counted = load_counted_points(out, stem, classes, design.frame.slide_size)
    except HistosegError:
        return None
    if counted is None or counted.rounds == 0 or counted.design is None:
        return None
    names = list(classes)
    if not {"interstitium", "tubules", "glomeruli"} <= set(names):
        return None
    label = counted.label.astype(np.int64)
    a = (label == names.index("interstitium")).astype(float)
    b = np.isin(label, [names.index(c) for c in ("interstitium", "tubules", "glomeruli")]).astype(float)
    from histoseg.sampling.estimators import point_counting

    sample = counted.sample()
    ratio = point_counting(sample, a, b, guard=False).estimate
    if not math.isfinite(ratio):
        return None
    return stratum_sd(a - ratio * b, sample.stratum, len(design.frame.strata))


def _check_sample_options(n: int, design: str, strata: str, seed: int | None, margin_um: float,
                          results: str | os.PathLike[str] | None, predictor: Predictor | None,
                          slides: str | Sequence[str] | None) -> None:
    """Reject a bad ``histoseg sample`` option (before anything is read or written)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"--n {n}: fewer than 1 point per slide; give at least 1 (e.g. --n 100)")
    if design not in DESIGNS:
        raise ConfigError(f"--design {design}: not a design; choose one of {', '.join(DESIGNS)}")
    if strata not in STRATA_RULES:
        raise ConfigError(f"--strata {strata}: not a strata rule; choose one of {', '.join(STRATA_RULES)}")
    if not (math.isfinite(margin_um) and 0 <= margin_um <= 10_000):
        raise ConfigError(f"--margin_um {margin_um}: outside 0 to 10000 µm; give a margin in that range (default 50)")
    if seed is not None and not 0 <= seed < 2**63:
        raise ConfigError(f"--seed {seed}: negative or too large; give a non-negative integer below 2**63")
    if (predictor is None) != (slides is None):
        raise ConfigError("--ckpt_path and --slides go together; give both, or --results")
    if results is not None and predictor is not None:
        raise ConfigError("--results and --ckpt_path: two sources of label maps; give one of them")


def _sample_sources(out_dir: Path, results: str | os.PathLike[str] | None, predictor: Predictor | None,
                    slides: str | Sequence[str] | None) -> list[_Source]:
    """The slides to sample: a results folder's label maps, or slides to predict (unique stems)."""
    sources: list[_Source] = []
    if results is not None:
        sources = sources_from_results(Path(results))
    elif predictor is not None and slides is not None:
        for path in collect_slides(slides, out_dir):
            sources.append(
                _Source(path.name, safe_stem(path.stem), None, path, None, None, None,
                        list(predictor.classes), predictor.background_class, predictor.checkpoint_sha256)
            )
        if not sources:
            raise HistosegError(f"--slides {slides}: no slide files found; give a slide file, a folder or a glob")
    stems = [s.stem for s in sources]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise HistosegError(
            f"--slides: two slides share the name {twice[0]!r}; their points would share files: "
            "sample them into separate --out folders"
        )
    return sources


def _round_plan(out_dir: Path, sources: list[_Source]) -> list[tuple[str, _Source | None, PointDesign | None]]:
    """Per slide: its stem, source and earlier design (None: new), after checking the files it would write."""
    # Slides with a design already get a round; designs in OUT without a source get one too.
    existing = {}
    if out_dir.is_dir():
        for record in sorted(out_dir.glob("*.design.json")):
            if is_design_file(record):
                existing[record.name[: -len(".design.json")]] = record
    plan: list[tuple[str, _Source | None, PointDesign | None]] = []
    for source in sources:
        record = design_path(out_dir, source.stem)
        old_design = read_design(record) if is_design_file(record) else None
        # The files this run would write: round 1's (no design yet) or the next round's.
        _check_ours(out_dir, source.stem, 1 if old_design is None else old_design.last_round + 1)
        plan.append((source.stem, source, old_design))
    known = {stem for stem, _, _ in plan}
    for stem, record in existing.items():
        if stem not in known:
            plan.append((stem, None, read_design(record)))
    if not plan:
        raise HistosegError(
            f"--out {out_dir}: no design to add a round to; give --results or --ckpt_path and --slides"
        )
    for stem, _, old in plan:
        if old is not None:
            _check_ours(out_dir, stem, old.last_round + 1)
    return plan


def _place_round(out_dir: Path, stem: str, source: _Source | None, old: PointDesign | None,
                 predictor: Predictor | None, options: InferenceOptions | None, *, n: int, design: str,
                 strata: str, user_seed: int, margin_um: float,
                 mpp: float | None) -> tuple[PointDesign, int, np.ndarray]:
    """A slide's new design (round 1) or its next round: the design, the round number and its new points."""
    if old is None:
        assert source is not None
        frame, origin = _frame_of(source, predictor, options, strata if design == "stratified" else "none",  # type: ignore[arg-type]
                                  margin_um, mpp)
        number = 1
        made = new_design(source.slide, design, frame, n=n, seed=_slide_seed(user_seed, stem, 1),  # type: ignore[arg-type]
                          source={**origin, "seed": user_seed})
        fresh = np.ones(len(made), bool)
    else:
        number = old.last_round + 1
        classes = old.source.get("classes") or (source.classes if source else [])
        sd = _counted_sd(out_dir, stem, old, classes) if old.kind == "stratified" else None
        made = add_round(old, n=n, seed=_slide_seed(user_seed, stem, number), counted_sd=sd)
        made.rounds[-1]["user_seed"] = user_seed
        fresh = made.round == number
    return made, number, fresh


def _write_round(out_dir: Path, stem: str, made: PointDesign, number: int, fresh: np.ndarray, quiet: bool) -> None:
    """Write a round's points files, then the design record, and say so unless ``quiet``."""
    names = [made.ids[i] for i in np.flatnonzero(fresh).tolist()]
    classes = made.source.get("classes") or ["background"]
    written = []
    for path in _round_paths(out_dir, stem, number):
        written.append(write_counted_points(path, names, made.x[fresh], made.y[fresh], classes))
    write_design(made, design_path(out_dir, stem))
    if not quiet:
        spacing = ""
        if made.lattice is not None and made.source.get("slide_mpp"):
            um = made.lattice.step[0] * float(made.source["slide_mpp"])
            spacing = f", spacing {um:.0f} µm"
        print(
            f"sample: {made.slide}: round {number}, {len(names)} points ({made.kind}{spacing}) -> {written[0]}",
            file=sys.stderr,
        )


def run_sample(
    out: str | os.PathLike[str],
    *,
    results: str | os.PathLike[str] | None = None,
    predictor: Predictor | None = None,
    slides: str | Sequence[str] | None = None,
    options: InferenceOptions | None = None,
    n: int = 100,
    design: str = "stratified",
    strata: str = "class+edge",
    seed: int | None = None,
    margin_um: float = 50.0,
    mpp: float | None = None,
    quiet: bool = False,
) -> int:
    """Place (or add a round of) counting points for every slide; see the module docstring.

    Args:
        out: The points folder (created).
        results: A ``quantify`` output folder: its label maps place the points.
        predictor: With ``slides``: predict each slide's label map here instead.
        slides: Slide files, folders or globs (with ``predictor``).
        options: Inference options for ``predictor``.
        n: Points per slide (a new design), or points to add (a new round).
        design: ``grid``, ``random`` or ``stratified`` (new designs only).
        strata: Strata of a stratified design: ``class+edge``, ``class`` or ``none``.
        seed: Seed of the placement (None: drawn from the system and recorded).
        margin_um: Growth of the model's tissue into glass for the frame, in µm.
        mpp: Level-0 mpp override for slides without one (with ``predictor``).
        quiet: No summary lines on stderr.

    Returns:
        0 when done.

    Raises:
        HistosegError: invalid option, unreadable inputs, or a file in ``out`` histoseg did not write.
    """
    _check_sample_options(n, design, strata, seed, margin_um, results, predictor, slides)
    out_dir = Path(out)
    user_seed = secrets.randbits(31) if seed is None else int(seed)
    sources = _sample_sources(out_dir, results, predictor, slides)
    plan = _round_plan(out_dir, sources)
    ensure_writable_dir(out_dir)
    for stem, source, old in plan:
        made, number, fresh = _place_round(
            out_dir, stem, source, old, predictor, options, n=n, design=design, strata=strata,
            user_seed=user_seed, margin_um=margin_um, mpp=mpp,
        )
        _write_round(out_dir, stem, made, number, fresh, quiet)
    return 0


FINETUNE_RECIPE: dict[str, Any] = {
    "loss": "ce",
    "regularizer": "crf",
    "regularizer_weight": 0.1,
    "lr": 0.0005,
    "scheduler": "cosine",
    "freeze_encoder": False,
}
"""The fold models' fine-tuning recipe: configs/kidney_scribbles.yaml's (partial CE + CRF 0.1, lr 5e-4)."""

_NETWORK_KEYS = ("arch", "encoder", "encoder_depth", "decoder_channels", "channels_last")


def _fold_config(base: dict[str, Any], ckpt: Path, table: Path, root: Path, steps: int, seed: int) -> dict[str, Any]:
    """A LightningCLI config that fine-tunes ``ckpt`` on one fold's slide table for ``steps`` steps."""
    hp = {k: v for k, v in (base.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    block = base.get("histoseg") or {}
    batch, epochs = 8, 4
    model = {k: hp[k] for k in _NETWORK_KEYS if k in hp}
    model.update({"encoder_weights": None, "init_checkpoint": str(ckpt.resolve()), **FINETUNE_RECIPE})
    return {
        "seed_everything": int(seed),
        "trainer": {
            "max_epochs": epochs,
            "accelerator": "auto",
            "devices": "auto",
            "logger": False,
            "default_root_dir": str(root.resolve()),
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"save_last": True, "every_n_epochs": 1},
                }
            ],
        },
        "model": {"class_path": "histoseg.tasks.SegmentationTask", "init_args": model},
        "data": {
            "class_path": "histoseg.datamodules.SlideDataModule",
            "init_args": {
                "slides": str(table.resolve()),
                "classes": list(block.get("classes") or hp.get("classes") or []),
                "mpp": float(block.get("mpp") or hp["mpp"]),
                "patches": {
                    "patch_size": int(block.get("patch_size") or hp["patch_size"]),
                    "batch_size": batch,
                    "patches_per_epoch": max(batch, steps * batch // epochs),
                    "val_patches": 1,
                    "class_balanced": True,
                },
                "loader": {"num_workers": 0},
                "seed": int(seed),
            },
        },
    }


def _crossfit_plan(out_dir: Path, classes: list[str], paths: dict[str, Path], folds: int,
                   seed: int) -> list[tuple[str, CountedSlide, np.ndarray, str]]:
    """Per slide with a complete classified round: its stem, counted points, fold of each point and design sha256."""
    from histoseg.io.files import sha256_file
    from histoseg.sampling.design import crossfit_folds

    plan = []
    for design_file in sorted(out_dir.glob(f"*{SUFFIX}")):
        if not is_design_file(design_file):
            continue
        stem = design_file.name[: -len(SUFFIX)]
        counted = load_counted_points(out_dir, stem, classes)
        if counted is None or counted.rounds == 0:
            continue
        if stem not in paths:
            raise HistosegError(
                f"--slides: no slide file for {design_file.name} ({counted.design.slide if counted.design else stem}); "
                "give --slides the slides the points were placed on"
            )
        fold_of = crossfit_folds(counted.design, folds, seed) if counted.design is not None else {}
        fold = np.array([fold_of[str(i)] for i in counted.ids], np.int64)
        plan.append((stem, counted, fold, sha256_file(design_file)))
    return plan


def _print_crossfit_next(slides: int, folds: int, folder: Path, ckpt: Path, out_dir: Path) -> None:
    """Tell on stderr what was written and the fit and quantify commands that come next."""
    print(f"sample: {slides} slide(s), {folds} folds -> {folder}; fit each fold, then quantify:", file=sys.stderr)
    for k in range(folds):
        print(f"  python -m histoseg fit --config {folder / f'fold{k}.yaml'}", file=sys.stderr)
    print(
        f"  python -m histoseg quantify --ckpt_path {ckpt} --slides SLIDES --out RESULTS --points {out_dir} "
        f"--crossfit '{folder}/fold*/**/last.ckpt'",
        file=sys.stderr,
    )


def run_crossfit(
    out: str | os.PathLike[str],
    *,
    ckpt_path: str | os.PathLike[str],
    slides: str | Sequence[str],
    folds: int = 2,
    seed: int = 0,
    steps: int = 64,
    mpp: float | None = None,
    quiet: bool = False,
) -> int:
    """Split every slide's classified points into ``folds`` folds and write one fine-tuning per fold.

    Writes into ``<out>/crossfit/``: per fold ``k`` the training points of each slide (every fold
    but ``k``, ``<stem>.fold<k>.csv``), the slide table ``fold<k>.slides.csv`` and the config
    ``fold<k>.yaml`` (fine-tunes ``ckpt_path`` on them, :data:`FINETUNE_RECIPE`, ``steps`` steps);
    and ``crossfit.json`` (:mod:`histoseg.report.crossfit`). Only complete rounds are split.

    Raises:
        HistosegError: a bad option, no classified points, a slide without its design, or files in
            ``<out>/crossfit`` histoseg did not write.
    """
    import yaml

    from histoseg.inference.checkpoint import read_checkpoint, resolve_checkpoint_path
    from histoseg.io.files import atomic_path, sha256_file
    from histoseg.labels.points import PointSet, write_points_csv
    from histoseg.report.crossfit import FOLDER, is_manifest, manifest_path, write_manifest

    if not 2 <= folds <= 10:
        raise ConfigError(f"--crossfit {folds}: not 2 to 10 folds; give 2 to 10 (2 is the usual choice)")
    if not 1 <= steps <= 100_000:
        raise ConfigError(f"--finetune_steps {steps}: not a positive number of steps; give one (default 64)")
    out_dir = Path(out)
    if not out_dir.is_dir():
        raise HistosegError(f"--out {out_dir}: not a points folder; run 'histoseg sample' and classify the points first")
    ckpt = resolve_checkpoint_path(ckpt_path)
    base = read_checkpoint(ckpt)
    classes = list(base["histoseg"]["classes"])
    paths = {safe_stem(p.stem): p for p in collect_slides(slides, out_dir)}
    folder = out_dir / FOLDER
    record = manifest_path(out_dir)
    if folder.exists() and any(folder.iterdir()) and not is_manifest(record):
        raise HistosegError(
            f"{folder}: exists and was not written by 'histoseg sample --crossfit'; move it away and run again"
        )
    plan = _crossfit_plan(out_dir, classes, paths, folds, seed)
    if not plan:
        raise HistosegError(
            f"--out {out_dir}: no slide with a complete round of classified points; classify the points "
            "(docs/intervals.md) and run again"
        )
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    for k in range(folds):
        rows = []
        for stem, counted, fold, _ in plan:
            train = fold != k
            path = folder / f"{stem}.fold{k}.csv"
            write_points_csv(PointSet(counted.x[train], counted.y[train], counted.label[train]), path, classes)
            slide = paths[stem].resolve()
            rows.append({"slide": slide, "labels": path.resolve(), "kind": "points", "split": "train", "mpp": mpp})
        table = write_slide_table(folder / f"fold{k}.slides.csv", rows)
        config = _fold_config(base, ckpt, table, folder / f"fold{k}", steps, seed + k)
        with atomic_path(folder / f"fold{k}.yaml") as tmp:
            Path(tmp).write_text(
                f"# Fold {k} of {folds}: fine-tunes {ckpt.name} on the counted points of every other fold\n"
                "# (histoseg sample --crossfit; docs/intervals.md). Run: python -m histoseg fit --config THIS\n"
                + yaml.safe_dump(config, sort_keys=False),
                encoding="utf-8",
            )
    for stem, counted, fold, design_sha in plan:
        manifest[stem] = {
            "design_sha256": design_sha,
            "held_out": [[str(counted.ids[i]) for i in np.flatnonzero(fold == k).tolist()] for k in range(folds)],
        }
    write_manifest(record, folds, seed, sha256_file(ckpt), manifest)
    if not quiet:
        _print_crossfit_next(len(plan), folds, folder, ckpt, out_dir)
    return 0


__all__ = ["FINETUNE_RECIPE", "STRATA_RULES", "run_crossfit", "run_sample", "sources_from_results"]
