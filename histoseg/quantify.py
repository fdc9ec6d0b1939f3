"""Quantify a cohort of slides: label maps, GeoJSON, overlays and one report, resumable and shardable.

This module owns ``python -m histoseg quantify`` (:func:`run_quantify`). For every slide it writes,
inside the output folder ``OUT`` only (names from :func:`histoseg.io.files.safe_stem`):

- ``OUT/<stem>.labels.tif``: the uint8 label map, tiled pyramidal TIFF with mpp and colour table;
- ``OUT/<stem>.geojson``: one QuPath annotation per connected region, level-0 slide pixels;
- ``OUT/<stem>.overlay.png``: thumbnail and prediction side by side, legend and biomarker;
- ``OUT/.<stem>.result.json``: the slide's numbers, written **last** (the completion marker);

and for the cohort ``OUT/report.csv``, ``OUT/report.json``, ``OUT/cohort.png`` and ``OUT/index.html``,
built from the result files. Every file is written under a temporary name and renamed when complete.

- **Resume**: a slide whose result file says ``ok`` for the same slide file (path, size, mtime),
  checkpoint and settings, and whose three outputs exist, is skipped. Failed slides are retried.
- **Failures**: an unreadable or truncated slide, a non-slide file, a slide without mpp... prints
  ``error: <file>: <reason>`` on stderr, removes that slide's partial outputs, records the failure
  (listed in the report with its reason) and goes on; the return status is 1 if any slide failed.
- **Shards**: rank ``r`` of ``world_size`` processes ``slides[r::world_size]`` (sorted); every rank
  writes result files, rank 0 waits for all of them (``wait_timeout``) and writes the merged report.

Example:
    >>> from histoseg.quantify import run_quantify
    >>> status = run_quantify(predictor, "slides/*.svs", Path("out"), progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histoseg import __version__
from histoseg.errors import ConfigError, HistosegError, SlideError
from histoseg.inference.health import prediction_problem, slide_problem, tissue_problem
from histoseg.inference.options import InferenceOptions
from histoseg.inference.predict import predict_slide
from histoseg.inference.predictor import Predictor
from histoseg.io.files import atomic_path, ensure_writable_dir, real_path, sha256_file
from histoseg.io.progress import Display as _Display
from histoseg.io.slide import Slide, check_mpp_override, find_slides
from histoseg.outputs import (
    COHORT_FILES,
    assign_stems,
    check_cohort_files,
    is_ours,
    marker_path,
    output_paths,
    remove_stale_temporaries,
    slide_stems,
)
from histoseg.report.areas import interstitial_fraction, read_label_level
from histoseg.report.counting import design_path, load_counted_points, points_key, unmatched_points_files
from histoseg.report.crossfit import fold_of_checkpoint, read_manifest
from histoseg.report.estimates import FoldModel, slide_point_estimates
from histoseg.report.figures import write_cohort_png, write_overlay_png
from histoseg.report.geojson import labels_tif_to_geojson, write_geojson
from histoseg.report.html import write_html_report
from histoseg.report.summary import run_summary, written_since
from histoseg.report.tables import write_report_csv, write_report_json

__all__ = ["Cohort", "collect_slides", "remove_stale_temporaries", "run_quantify", "same_file_lines", "slide_stems"]

RESULT_OPTIONS = (
    "tile_size",
    "overlap",
    "blend",
    "margin",
    "skip_glass",
    "precision",
    "channels_last",
    "tta",
)
"""Inference options that change the numbers: part of the report settings and of the resume key."""


def collect_slides(
    slides: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], out: Path
) -> list[Path]:
    """Expand slide arguments (files, folders, globs) into a sorted, de-duplicated list.

    Files that are this tool's own outputs in ``out`` (label maps, GeoJSON, overlays, reports,
    see :func:`histoseg.outputs.is_ours`) are left out, so ``OUT`` may be the slide folder
    itself; so are outputs of earlier runs into *other* folders that a folder or glob finds
    (``--slides 'slides/**/*.tif'`` over ``slides/out1/``: a file beside its result file
    ``.<stem>.result.json``, or a report beside a histoseg ``report.json``). A file merely named like
    an output is a slide like any other.

    Raises:
        SlideError: an empty or a single pattern that matches nothing.
    """
    items = [slides] if isinstance(slides, (str, os.PathLike)) else list(slides)
    found: list[Path] = []
    if not items:
        raise HistosegError(
            "--slides: no slide given; give a slide file, a folder or a glob such as 'slides/*.svs'"
        )
    listed: set[Path] = set()  # found by a folder or a glob (not named one by one)
    for item in items:
        text = str(item)
        if not text.strip() or Path(text).is_dir() or any(ch in text for ch in "*?["):
            matches = find_slides(text)
            found.extend(matches)
            listed.update(matches)
        else:
            found.append(Path(text))
    out_resolved = real_path(out)
    unique: dict[str, Path] = {}
    for path in found:
        resolved = real_path(path)
        if resolved.parent == out_resolved and is_ours(resolved, out):
            continue
        if path in listed and is_ours(resolved, resolved.parent):
            continue  # an output of an earlier run into another folder ('slides/**/*.tif' finds out1/s.labels.tif)
        # One slide per *name*: the same name reached twice (a folder and a glob, a linked folder) is
        # one slide; two names of one file (a symbolic or hard link) are two (see same_file_lines).
        unique.setdefault(str(real_path(path.parent) / path.name), path)
    return sorted(unique.values(), key=lambda p: str(p))


def same_file_lines(paths: Sequence[Path]) -> list[str]:
    """One line per slide name that is the same file as an earlier one (a symbolic or a hard link).

    Both names are quantified, each under its own name with its own points file, so no input is
    dropped; the line says so, since the cohort then counts that file twice.
    """
    first: dict[tuple[int, int], Path] = {}
    lines = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        identity = (stat.st_dev, stat.st_ino)
        if identity in first:
            lines.append(
                f"{path}: the same file as {first[identity]} (a symbolic or hard link); both are quantified, "
                "each under its own name and points, so the cohort counts it twice: remove one name from "
                "--slides if that is not meant"
            )
        else:
            first[identity] = path
    return lines


def _slide_identity(path: Path) -> dict[str, Any]:
    try:
        stat = path.stat()
        return {"path": str(real_path(path)), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    except OSError:
        return {"path": str(real_path(path)), "size": None, "mtime_ns": None}


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _clean_json(result: dict[str, Any]) -> Any:
    from histoseg.report.tables import _clean

    return _clean(result)


def _write_marker(path: Path, result: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(_clean_json(result), handle, indent=1, allow_nan=False)


def _is_complete(result: dict[str, Any] | None, key: dict[str, Any], out: Path, stem: str) -> bool:
    if not result or result.get("status") != "ok" or result.get("key") != key:
        return False
    return all(p.is_file() for p in output_paths(out, stem).values())


def _error_line(path: Path, message: str) -> tuple[str, str]:
    """``(line for stderr, reason for the report)``; the message may already start with the path."""
    message = " ".join(str(message).split())
    for prefix in (str(path), str(real_path(path))):
        if message.startswith(prefix + ":"):
            reason = message[len(prefix) + 1 :].strip()
            return f"error: {prefix}: {reason}", reason
    return f"error: {path}: {message}", message


def run_quantify(
    predictor: Predictor,
    slides: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    options: InferenceOptions | None = None,
    *,
    mpp: float | None = None,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
    wait_timeout: float = 24 * 3600.0,
    points: str | os.PathLike[str] | None = None,
    target_halfwidth: float = 0.05,
    crossfit: Sequence[str | os.PathLike[str]] = (),
) -> int:
    """Predict, quantify and report every slide of a cohort.

    Args:
        predictor: The model and its facts (classes, mpp, tile size, background class, checkpoint hash).
        slides: A slide file, folder or glob, or a list of them.
        out: Output folder (created; must be writable).
        options: Tiling, merging, device, precision and TTA settings
            (:class:`~histoseg.inference.options.InferenceOptions`; default: all defaults).
        mpp: Level-0 mpp of the slides, overriding their metadata (needed for files without one).
        progress: Progress bars on stderr (only when it is a terminal).
        rank: This process's shard index, 0 <= rank < world_size.
        world_size: Number of shards (processes) sharing the cohort.
        wait_timeout: Seconds rank 0 waits for the other ranks' result files before reporting the
            missing slides as failed.
        points: Folder of counted points (``histoseg sample``'s folder, classified: ``<slide
            stem>.points.csv``/``.geojson`` and ``<slide stem>.design.json``): the report then also
            gives each slide's design-matched estimates and the headline ``if_estimate``.
        target_halfwidth: Interval half-width (fraction, 0.05 = 5 pp) the report says how many
            points would reach.
        crossfit: Fold checkpoints fine-tuned by ``histoseg sample --crossfit`` configs (paths or
            globs): each slide is also predicted by every fold model, and the report adds
            cross-fitted PPI (each point scored by the model that never saw it).

    Returns:
        0 when every slide succeeded, 1 when any failed (rank 0: in the merged report).

    Raises:
        HistosegError: the output folder is not writable, nothing matches ``slides``, or an option is invalid.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(
            f"rank={rank}, world_size={world_size}: need world_size >= 1 and 0 <= rank < world_size; e.g. rank=0, world_size=2"
        )
    cohort = Cohort(
        predictor, slides, out, options, mpp=mpp, points=points, target_halfwidth=target_halfwidth, crossfit=crossfit
    )
    if rank == 0:
        lines = same_file_lines(cohort.paths)
        if cohort.points is not None:
            lines += unmatched_points_files(cohort.points, [p.name for p in cohort.paths])
        for line in lines:
            print(f"warning: {line}", file=sys.stderr)
    mine = list(range(rank, len(cohort.paths), world_size))
    display = _Display(progress, len(mine))
    failures = 0
    try:
        for index in mine:
            failures += cohort.process(index, display)["status"] != "ok"
    finally:
        display.close()
    if rank != 0:
        return 1 if failures else 0
    return cohort.write_report(world_size, wait_timeout, progress)


class Cohort:
    """One quantify run over a list of slides: per-slide processing and the merged report.

    Shared by :func:`run_quantify` (one process or ``--rank/--world_size`` shards) and by
    :class:`histoseg.writers.SlideWriter` (Lightning's predict loop, any strategy).

    Raises:
        HistosegError: the output folder is not writable, nothing matches ``slides``, or an option is invalid.
    """

    def __init__(
        self,
        predictor: Predictor,
        slides: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        out: str | os.PathLike[str],
        options: InferenceOptions | None = None,
        *,
        mpp: float | None = None,
        points: str | os.PathLike[str] | None = None,
        target_halfwidth: float = 0.05,
        crossfit: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        if mpp is not None:
            mpp = check_mpp_override(mpp, predictor.mpp)  # the one check of --mpp on this route
        if not (isinstance(target_halfwidth, (int, float)) and 0 < target_halfwidth < 0.5):
            raise ConfigError(
                f"--target_halfwidth {target_halfwidth}: must be a fraction in (0, 0.5); e.g. 0.05 for +-5 pp"
            )
        self.target_halfwidth = float(target_halfwidth)
        self.started = time.time()
        self.predictor = predictor
        out_path = Path(out)
        self.paths = collect_slides(slides, out_path)
        if not self.paths:
            raise HistosegError(f"{slides}: no slide files found; give a slide file, a folder or a glob")
        check_cohort_files(self.paths, out_path)
        self.points = Path(points) if points else None
        if self.points is not None and not self.points.is_dir():
            raise HistosegError(
                f"{self.points}: --points must be a folder of <slide stem>.points.csv/.geojson files; "
                "give that folder, or leave --points out"
            )
        self.folds = _fold_predictors(crossfit, self.points, predictor, options.tile_size if options else None)
        self.out_dir = ensure_writable_dir(out_path)
        self.stems = assign_stems(self.paths, self.out_dir)
        remove_stale_temporaries(self.out_dir)
        self.options = (options if options is not None else InferenceOptions()).resolve(predictor)
        self.mpp = mpp
        self.settings = {
            "checkpoint_sha256": predictor.checkpoint_sha256,
            "classes": list(predictor.classes),
            "label_mpp": float(predictor.mpp),
            **{name: getattr(self.options, name) for name in RESULT_OPTIONS},
            "mpp_override": mpp,
            "background_class": predictor.background_class,
        }
        self.reused = 0
        self.reused_stems: set[str] = set()  # slides whose complete outputs this process reused

    def process(self, index: int, display: _Display | None = None) -> dict[str, Any]:
        """Quantify slide ``index`` (or reuse its complete outputs); never raises for a bad slide."""
        display = display or _Display(False, 1)
        path, stem = self.paths[index], self.stems[index]
        key = self.slide_key(path)
        previous = _read_marker(marker_path(self.out_dir, stem))
        if previous is not None and _is_complete(previous, key, self.out_dir, stem):
            self.reused += 1
            self.reused_stems.add(stem)
            display.end_slide(previous, path.name)
            self._adopt_precision(previous)
            return previous
        callback = display.start_slide(path.name)
        for _ in range(16):
            result = _quantify_one(
                self.predictor,
                path,
                stem,
                self.out_dir,
                key,
                self.options,
                mpp=self.mpp,
                on_progress=callback,
                display=display,
                points=self.points,
                target_halfwidth=self.target_halfwidth,
                folds=self.folds,
            )
            if result is not None:
                break
            # Another run took the stem for another slide file of this name since the stems were chosen.
            others = [s for i, s in enumerate(self.stems) if i != index]
            stem = self.stems[index] = assign_stems([path], self.out_dir, reserved=others)[0]
        else:
            raise HistosegError(
                f"{path}: no free output name in {self.out_dir} (other runs keep taking them); "
                "give each run its own --out folder"
            )
        display.end_slide(result)
        self._adopt_precision(result)
        return result

    def slide_key(self, path: Path) -> dict[str, Any]:
        """What a slide's result depends on: its file, the model, the options and its points.

        The points are part of it (by content): editing, adding or removing a points file, or
        another ``--target_halfwidth``, re-runs the slide instead of serving estimates of other points.
        """
        key = {**self.settings, "slide": _slide_identity(path)}
        if self.points is not None:
            key["points"] = {"files": points_key(self.points, path.stem), "target_halfwidth": self.target_halfwidth}
        if self.folds is not None:
            key["crossfit"] = [fold.checkpoint_sha256 for fold in self.folds.models]
        return key

    def _adopt_precision(self, result: dict[str, Any]) -> None:
        """``auto`` is checked once per run: later slides use what the checked slide decided (also on resume)."""
        if self.options.precision == "auto" and result.get("precision_check"):
            self.options = self.options.replace(precision=result["precision"])

    def write_report(
        self, world_size: int = 1, wait_timeout: float = 24 * 3600.0, progress: bool = False
    ) -> int:
        """Merge every slide's result file into report.csv/json and cohort.png (rank 0 only).

        Returns:
            0 when every slide succeeded, else 1.
        """
        out_dir = self.out_dir
        results = _gather(
            self.paths, self.stems, out_dir, self.settings, world_size, self.started, wait_timeout, self.slide_key
        )
        used = sorted(
            {str(r["precision"]) for r in results if r.get("status") == "ok" and r.get("precision")}
        )
        extra = {
            "settings": {
                **{k: v for k, v in self.settings.items() if k != "classes"},
                "precision_used": used,
            },
            "classes": self.settings["classes"],
            "checkpoint_sha256": self.predictor.checkpoint_sha256,
            "training_seed": self.predictor.metadata.get("seed"),
            "world_size": world_size,
        }
        from histoseg.report.tables import report_rows

        try:
            check_cohort_files(self.paths, out_dir)
            write_report_json(out_dir / "report.json", results, extra)
            write_report_csv(out_dir / "report.csv", report_rows(results))
            write_cohort_png(out_dir / "cohort.png", results)
            page = write_html_report(out_dir, results, extra)
        except KeyboardInterrupt:  # no report that mixes this run's files with an older run's
            for name in COHORT_FILES:
                with contextlib.suppress(OSError):
                    (out_dir / name).unlink()
            raise
        except OSError as exc:
            raise HistosegError(
                f"{out_dir}: cannot write the cohort report ({exc.strerror or exc}); free disk space or "
                "choose a writable --out folder, then run again (finished slides are reused)"
            ) from None
        failed = sum(r["status"] != "ok" for r in results)
        if progress:  # also when stderr is not a terminal: a batch log says how the run ended
            fresh = [
                s not in self.reused_stems and written_since(marker_path(out_dir, s), self.started)
                for s in self.stems
            ]
            for line in run_summary(results, fresh, time.time() - self.started, page):
                print(line, file=sys.stderr)
        return 1 if failed else 0


def _gather(
    paths: Sequence[Path],
    stems: Sequence[str],
    out: Path,
    settings: dict[str, Any],
    world_size: int,
    started: float,
    wait_timeout: float,
    slide_key: Callable[[Path], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Result of every slide from the result files (rank 0 waits for the other ranks' files)."""
    deadline = time.monotonic() + (wait_timeout if world_size > 1 else 0.0)
    while True:
        results: list[dict[str, Any] | None] = []
        for path, stem in zip(paths, stems, strict=True):
            key = slide_key(path)
            marker = marker_path(out, stem)
            data = _read_marker(marker)
            if data is None or data.get("key") != key or data.get("status") == "running":
                results.append(None)
                continue
            if data.get("status") != "ok":
                # A failure recorded before this run started may be retried right now by its rank.
                with contextlib.suppress(OSError):
                    if world_size > 1 and marker.stat().st_mtime < started - 1.0:
                        results.append(None)
                        continue
            results.append(data)
        missing = [i for i, r in enumerate(results) if r is None]
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(2.0)
    final: list[dict[str, Any]] = []
    for index, result in enumerate(results):
        if result is None:
            rank = index % world_size
            result = {
                "slide": paths[index].name,
                "path": str(paths[index]),
                "stem": stems[index],
                "status": "failed",
                "error": f"no result: rank {rank} of {world_size} did not finish this slide",
                "histoseg_version": __version__,
                "checkpoint_sha256": settings["checkpoint_sha256"],
            }
        final.append(result)
    return final


def _uncertainty(pred: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """:meth:`SlidePrediction.uncertainty` of the slide, its slide-level columns copied to every row."""
    values = pred.uncertainty()
    for row in rows:
        row.update({k: v for k, v in values.items() if k != "tta_view_fractions"})
    return values


def _quantify_one(
    predictor: Predictor,
    path: Path,
    stem: str,
    out: Path,
    key: dict[str, Any],
    options: InferenceOptions,
    *,
    mpp: float | None,
    on_progress: Callable[[int, int], None] | None,
    display: _Display,
    points: Path | None = None,
    target_halfwidth: float = 0.05,
    folds: _Folds | None = None,
) -> dict[str, Any] | None:
    """Process one slide; never raises for a bad slide (the failure is recorded and returned).

    The result file is written first with status ``running`` (claiming the slide's output names,
    see :mod:`histoseg.outputs`) and last with the slide's status. Interrupted (Ctrl-C), the
    slide's outputs and result file are removed, as if it had never started, and the interrupt goes on.
    None when another slide file (a concurrent run into ``out``) holds ``stem`` (nothing is touched).
    """
    claimed = False
    try:
        if not _claim_marker(marker_path(out, stem), {**_base(predictor, path, stem, key), "status": "running", "error": ""}):
            return None
        claimed = True
        return _quantify_slide(
            predictor, path, stem, out, key, options, mpp=mpp, on_progress=on_progress, display=display,
            points=points, target_halfwidth=target_halfwidth, folds=folds,
        )
    except BaseException:  # KeyboardInterrupt (bad slides are recorded, never raised)
        if claimed:
            for output in [*output_paths(out, stem).values(), marker_path(out, stem)]:
                with contextlib.suppress(OSError):
                    output.unlink()
        raise


def _base(predictor: Predictor, path: Path, stem: str, key: dict[str, Any]) -> dict[str, Any]:
    """The fields of every result file of a slide."""
    return {
        "slide": path.name,
        "path": str(path),
        "stem": stem,
        "checkpoint_sha256": predictor.checkpoint_sha256,
        "training_seed": predictor.metadata.get("seed"),
        "histoseg_version": __version__,
        "key": key,
    }


def _claim_marker(marker: Path, record: dict[str, Any]) -> bool:
    """Write the slide's ``running`` result file unless the stem's result file records another slide file.

    Created exclusively (a hard link of a complete temporary file, which fails when the name exists),
    so of two runs that claim one stem at the same moment exactly one wins; a result file of the same
    slide file (a rerun) is replaced. Returns False when another slide file holds the stem.
    """
    from histoseg.outputs import marker_slide

    mine = record["key"]["slide"]["path"]
    tmp = marker.with_name(f".{marker.stem}.claim-{os.getpid()}.tmp-{os.getpid()}.json")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(_clean_json(record), handle, indent=1, allow_nan=False)
        try:
            os.link(tmp, marker)
            return True
        except FileExistsError:
            recorded = marker_slide(marker)
            if recorded is not None and recorded != mine:
                return False
        except OSError:  # no hard links on this file system: replace (no exclusive claim)
            pass
        os.replace(tmp, marker)
        return True
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _quantify_slide(
    predictor: Predictor,
    path: Path,
    stem: str,
    out: Path,
    key: dict[str, Any],
    options: InferenceOptions,
    *,
    mpp: float | None,
    on_progress: Callable[[int, int], None] | None,
    display: _Display,
    points: Path | None = None,
    target_halfwidth: float = 0.05,
    folds: _Folds | None = None,
) -> dict[str, Any]:
    """:func:`_quantify_one` without its interrupt cleanup."""
    outputs = output_paths(out, stem)
    base = _base(predictor, path, stem, key)
    try:
        result = {
            **base,
            **_predict_and_write(
                predictor, path, outputs, mpp, points, options, on_progress, target_halfwidth, folds
            ),
        }
        if result["status"] != "ok":
            display.error(f"warning: {path}: {result['error']}")
    except Exception as exc:  # noqa: BLE001 - one bad slide must not stop the cohort
        line, reason = _error_line(path, _failure_message(exc, out))
        display.error(line)
        for output in outputs.values():
            with contextlib.suppress(OSError):
                output.unlink()
        result = {**base, "status": "failed", "error": reason}
    try:
        _write_marker(marker_path(out, stem), result)
    except OSError as exc:
        with contextlib.suppress(OSError):  # it would say "running" for ever
            marker_path(out, stem).unlink()
        if result["status"] != "failed":  # else its error line is already printed
            display.error(f"error: {path}: {_failure_message(exc, out)}")
        result = {**base, "status": "failed", "error": result["error"] or _failure_message(exc, out)}
    return result


def _failure_message(exc: BaseException, out: Path) -> str:
    """The report's reason for a slide that failed with ``exc``."""
    if isinstance(exc, HistosegError):
        return str(exc)
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return f"out of memory ({exc}); lower --batch_size or --tile_size"
    if isinstance(exc, OSError):
        folder = Path(exc.filename).parent if exc.filename else out
        reason = exc.strerror or type(exc).__name__
        return f"cannot write in {folder} ({reason}); free disk space or choose a writable --out folder"
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"internal error ({type(exc).__name__}: {first[:200]}); please report it"


class _Folds:
    """The fold models of ``--crossfit`` (in fold order) and the manifest of their folds."""

    def __init__(self, models: list[Predictor], manifest: dict[str, Any]) -> None:
        self.models = models
        self.manifest = manifest

    def held_out(self, points: Path, stem: str) -> list[list[str]] | None:
        """Per fold, the points of ``stem`` its model never saw; None when the design changed since."""
        entry = self.manifest.get("slides", {}).get(stem)
        record = design_path(points, stem)
        if not entry or not record.is_file() or sha256_file(record) != entry.get("design_sha256"):
            return None
        return [list(ids) for ids in entry["held_out"]]


def _fold_predictors(
    crossfit: Sequence[str | os.PathLike[str]], points: Path | None, predictor: Predictor, tile_size: int | None
) -> _Folds | None:
    """Load the ``--crossfit`` checkpoints, one per fold of the points folder's manifest, in fold order."""
    if not crossfit:
        return None
    if points is None:
        raise ConfigError("--crossfit: the fold models need the points they were fitted on; give --points too")
    import glob

    from histoseg.inference.checkpoint import load_predictor, read_checkpoint

    manifest = read_manifest(points)
    paths: list[Path] = []
    for item in crossfit:
        text = str(item)
        found = sorted(Path(p) for p in glob.glob(text, recursive=True)) if any(c in text for c in "*?[") else [Path(text)]
        if not found:
            raise ConfigError(f"--crossfit {text}: no checkpoint matches; fit each fold first (histoseg sample --crossfit)")
        paths.extend(found)
    by_fold: dict[int, Predictor] = {}
    for path in paths:
        checkpoint = read_checkpoint(path)
        table = (checkpoint.get("datamodule_hyper_parameters") or {}).get("slides")
        k = fold_of_checkpoint(points, manifest, table, str(path))
        model = load_predictor(path, tile_size=tile_size, checkpoint=checkpoint)
        if list(model.classes) != list(predictor.classes) or float(model.mpp) != float(predictor.mpp):
            raise ConfigError(
                f"--crossfit {path}: its classes or mpp differ from --ckpt_path's; fine-tune the folds from that checkpoint"
            )
        if k in by_fold and by_fold[k].checkpoint_sha256 != model.checkpoint_sha256:
            raise ConfigError(f"--crossfit {path}: a second checkpoint for fold {k}; give one checkpoint per fold")
        by_fold[k] = model
    missing = [k for k in range(int(manifest["folds"])) if k not in by_fold]
    if missing:
        raise ConfigError(
            f"--crossfit: no checkpoint for fold(s) {', '.join(map(str, missing))}; fit them "
            f"(python -m histoseg fit --config {points}/crossfit/fold{missing[0]}.yaml)"
        )
    return _Folds([by_fold[k] for k in range(int(manifest["folds"]))], manifest)


def slide_status(pred: Any, background: int | None) -> tuple[str, str]:
    """``("ok", "")``, or the warning status of a prediction whose areas are not valid, and its reason.

    The statuses: ``nonfinite_logits``, ``no_tissue``, ``implausible_tissue``
    (:func:`histoseg.inference.health.tissue_problem`), ``all_glass``.
    """
    foreground = int(pred.counts.sum()) - (int(pred.counts[background]) if background is not None else 0)
    tissue_pixels = int(pred.tissue.sum()) if pred.tissue is not None else 1
    problem = prediction_problem(pred.tiles_run, pred.nonfinite_tiles, foreground, tissue_pixels)
    if problem is None or problem[0] == "all_glass":
        if pred.thumbnail is not None and pred.tissue is not None and pred.tiles_run:
            problem = tissue_problem(pred.thumbnail, pred.tissue) or problem
    return problem if problem is not None else ("ok", "")


def _marks(counted: Any, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The counted points as overlay marks: x and y as fractions of the slide's width and height, class."""
    width, height = float(size[0]), float(size[1])
    return np.asarray(counted.x) / width, np.asarray(counted.y) / height, np.asarray(counted.label)


def _write_geojson_and_overlay(
    path: Path,
    pred: Any,
    outputs: dict[str, Path],
    rows: list[dict[str, Any]],
    background: int | None,
    counted: Any,
) -> dict[str, Any]:
    """Write the slide's GeoJSON and overlay PNG from its written label map; the GeoJSON's summary."""
    collection, geo_info = labels_tif_to_geojson(
        outputs["labels"], pred.classes, slide_mpp=pred.slide_mpp, label_mpp=pred.mpp, background=background
    )
    write_geojson(outputs["geojson"], collection)
    small, _, _ = read_label_level(outputs["labels"], max_pixels=2048 * 2048)
    assert pred.thumbnail is not None
    write_overlay_png(
        outputs["overlay"],
        pred.thumbnail,
        small,
        pred.classes,
        rows=rows,
        title=f"{path.name}   (label map {pred.mpp:g} µm/px)",
        background=background,
        thumbnail_mpp=pred.slide_mpp * pred.thumbnail_downsample,
        points=None if counted is None else _marks(counted, pred.slide_dimensions),
    )
    return geo_info


def _remove_outputs(outputs: dict[str, Path]) -> None:
    """Delete the slide's output files that exist (a warning status keeps none of them)."""
    for output in outputs.values():
        with contextlib.suppress(FileNotFoundError):
            output.unlink()


def _predict_and_write(
    predictor: Predictor,
    path: Path,
    outputs: dict[str, Path],
    mpp: float | None,
    points: Path | None,
    options: InferenceOptions,
    on_progress: Callable[[int, int], None] | None = None,
    target_halfwidth: float = 0.05,
    folds: _Folds | None = None,
) -> dict[str, Any]:
    """Predict one slide and write its label map, GeoJSON and overlay; the slide's result fields."""
    fold_models: list[FoldModel] = []
    fold_predictions = []
    with Slide(path, mpp=mpp) as slide:
        problem = slide_problem(slide, predictor.mpp)
        if problem is not None:
            raise SlideError(f"{path}: {problem}")
        pred = predict_slide(
            slide, predictor, options, out_path=outputs["labels"], progress=False, on_progress=on_progress
        )
        held_out = folds.held_out(points, path.stem) if folds is not None and points is not None else None
        if held_out is not None:
            assert folds is not None
            for fold, ids in zip(folds.models, held_out, strict=True):
                fold_pred = predict_slide(slide, fold, options, progress=False)  # a temporary label map
                assert fold_pred.labels is not None  # no out_path: the label map is in memory
                fold_predictions.append(fold_pred)
                fold_models.append(FoldModel(fold_pred.labels, set(ids)))
    background = predictor.background_class
    rows = pred.areas(background=background)
    counted = None
    if points is not None:
        size = (int(pred.slide_dimensions[0]), int(pred.slide_dimensions[1]))
        counted = load_counted_points(points, path.stem, pred.classes, size)
    point_estimate = slide_point_estimates(
        counted, pred, outputs["labels"], rows, background, target_halfwidth=target_halfwidth, folds=fold_models
    )
    if folds is not None and point_estimate is not None and held_out is None:
        point_estimate["notes"].append(
            "no cross-fitting: the design changed since 'histoseg sample --crossfit' (or the slide is not in it)"
        )
    del fold_models, fold_predictions
    status, error = slide_status(pred, background)
    geo_info: dict[str, Any] | None = None
    if status == "ok":
        geo_info = _write_geojson_and_overlay(path, pred, outputs, rows, background, counted)
    else:  # a warning status: no label map, GeoJSON or overlay that could pass for a result
        _remove_outputs(outputs)
    return {
        "status": status,
        "error": error,
        "mpp": pred.slide_mpp,
        "mpp_source": pred.mpp_source,
        "label_mpp": pred.mpp,
        "slide_dimensions": list(pred.slide_dimensions),
        "label_shape": list(pred.shape),
        "interstitial_fraction": interstitial_fraction(pred.counts, pred.classes) if status == "ok" else None,
        **_uncertainty(pred, rows),
        "precision": pred.precision,
        "channels_last": pred.channels_last,
        "precision_check": pred.precision_check,
        "point_counting": point_estimate,
        "unlabelled_pixels": pred.unlabelled_pixels,
        "tiles_run": pred.tiles_run,
        "tiles_total": pred.tiles_total,
        "seconds": round(pred.seconds, 3),
        "geojson": geo_info,
        "outputs": {name: p.name for name, p in outputs.items()} if status == "ok" else {},
        "rows": rows if status == "ok" else [],
    }
