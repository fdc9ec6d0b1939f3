"""The output folder of ``histoseg quantify``: file names, what histoseg wrote, and collisions.

Outputs may share a folder with the slides, so no output may ever replace a file histoseg did not
write. A file in ``OUT`` is histoseg's when:

- ``<stem>.labels.tif``, ``<stem>.geojson``, ``<stem>.overlay.png``: the slide's result file
  ``.<stem>.result.json`` exists (it is written, status ``running``, before the slide's first output,
  and rewritten last with the slide's status);
- ``report.csv``, ``report.json``, ``cohort.png``, ``index.html``: ``report.json`` is a histoseg
  report (a JSON object whose ``histoseg_version`` is a string, ``definitions`` an object and
  ``slides`` a list: :data:`REPORT_RECORD`; it is written first).

Ownership of a JSON file is always structural (:func:`histoseg.io.ownership.has_record`): typed
fields at fixed places, so a user's file that merely contains a marker string is never histoseg's.

:func:`assign_stems` gives each slide an output stem whose files collide neither with an input slide,
nor with a file histoseg did not write, nor with another slide's outputs (the file stem; then the
full name; then a hash of the path). :func:`check_cohort_files` refuses a cohort-level name taken by
a file histoseg did not write (those names cannot change).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from histoseg.errors import HistosegError
from histoseg.io.files import path_keys, real_path, safe_stem
from histoseg.io.ownership import FieldSpec, is_owned_json

COHORT_FILES = ("report.csv", "report.json", "cohort.png", "index.html")
"""Cohort-level outputs (index.html is reserved for an HTML report)."""
OUTPUT_SUFFIXES = (".labels.tif", ".geojson", ".overlay.png")
"""Per-slide outputs, ``<stem><suffix>``."""


def output_paths(out: Path, stem: str) -> dict[str, Path]:
    """The per-slide outputs of ``stem`` by kind (``labels``, ``geojson``, ``overlay``)."""
    return {
        "labels": out / f"{stem}.labels.tif",
        "geojson": out / f"{stem}.geojson",
        "overlay": out / f"{stem}.overlay.png",
    }


def marker_path(out: Path, stem: str) -> Path:
    """The slide's result file (claims its outputs; its status says whether they are complete)."""
    return out / f".{stem}.result.json"


def is_ours(path: Path, out: Path) -> bool:
    """Whether ``path`` (any file) is an output histoseg wrote in ``out`` (see the module docstring)."""
    if real_path(path.parent) != real_path(out):
        return False
    if path.name in COHORT_FILES:
        return _is_histoseg_report(out / "report.json")
    for suffix in OUTPUT_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return marker_path(out, path.name[: -len(suffix)]).is_file()
    return False


REPORT_RECORD: Mapping[str, FieldSpec] = {"histoseg_version": str, "definitions": dict, "slides": list}
"""What makes ``report.json`` histoseg's: these top-level fields, of these types."""


def _is_histoseg_report(path: Path) -> bool:
    return is_owned_json(path, REPORT_RECORD)


def _candidates(path: Path) -> list[str]:
    digest = hashlib.sha1(str(real_path(path)).encode()).hexdigest()[:8]
    return [safe_stem(path.stem), safe_stem(path.name), f"{safe_stem(path.name)}-{digest}"]


def slide_stems(paths: Sequence[Path]) -> list[str]:
    """Distinct output stems: ``safe_stem`` of the file stem; the full name, then a path hash, on collisions."""
    stems = [safe_stem(p.stem) for p in paths]
    counts = Counter(stems)
    stems = [safe_stem(p.name) if counts[s] > 1 else s for s, p in zip(stems, paths, strict=True)]
    counts = Counter(stems)
    return [
        f"{s}-{hashlib.sha1(str(real_path(p)).encode()).hexdigest()[:8]}" if counts[s] > 1 else s
        for s, p in zip(stems, paths, strict=True)
    ]


def marker_slide(marker: Path) -> str | None:
    """The slide file (links followed) a result file records, None when it records none or is unreadable."""
    try:
        with open(marker, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return None
    slide = (
        data.get("key", {}).get("slide")
        if isinstance(data, dict) and isinstance(data.get("key"), dict)
        else None
    )
    path = slide.get("path") if isinstance(slide, dict) else None
    return path if isinstance(path, str) else None


def _taken(out: Path, stem: str, inputs: set[str], slide: Path | None = None) -> bool:
    """Whether an output of ``stem`` would replace an input slide, a file histoseg did not write, or another slide's.

    Another slide's: the stem's result file records another slide file (a concurrent or earlier run of
    a slide with the same name).
    """
    if marker_path(out, stem).is_file():
        recorded = marker_slide(marker_path(out, stem))
        if slide is not None and recorded is not None and recorded != str(real_path(slide)):
            return True
        return any(path_keys(p) & inputs for p in output_paths(out, stem).values())
    for path in output_paths(out, stem).values():
        if path_keys(path) & inputs or path.exists() or path.is_symlink():
            return True
    return False


def assign_stems(paths: Sequence[Path], out: Path, reserved: Iterable[str] = ()) -> list[str]:
    """Output stems for ``paths`` whose outputs replace no input, no file histoseg did not write, no other slide's.

    Another slide file's outputs are those whose result file records it: ``OUT`` shared by two runs of
    different slides with the same name gives the second slide its full name, then a path hash.

    Deterministic for the same slides and folder contents (a rerun finds the same outputs).

    Args:
        paths: The slides.
        out: The output folder.
        reserved: Stems already given to other slides of the run.
    """
    inputs = set().union(*(path_keys(p) for p in paths))
    stems = slide_stems(paths)
    used: set[str] = set(reserved)
    for index, path in enumerate(paths):
        options = [stems[index], *[c for c in _candidates(path) if c != stems[index]]]
        chosen = next((s for s in options if s not in used and not _taken(out, s, inputs, path)), None)
        counter = 2
        while chosen is None:
            candidate = f"{options[-1]}-{counter}"
            if candidate not in used and not _taken(out, candidate, inputs, path):
                chosen = candidate
            counter += 1
        stems[index] = chosen
        used.add(chosen)
    return stems


def check_cohort_files(paths: Iterable[Path], out: Path) -> None:
    """Refuse to run when a cohort-level output name is an input slide or a file histoseg did not write.

    Raises:
        HistosegError: naming the file and the way out.
    """
    inputs = set().union(*(path_keys(p) for p in paths))
    for name in COHORT_FILES:
        path = out / name
        if path_keys(path) & inputs or ((path.exists() or path.is_symlink()) and not is_ours(path, out)):
            raise HistosegError(
                f"{path}: exists and was not written by histoseg, and the cohort {name} would replace it; "
                "choose another --out folder, or move the file"
            )


_TEMPORARY = re.compile(r"\.tmp-(\d+)|\.(\d+)-\d+\.raw$")


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete temporary files left in ``out`` by killed runs (their process is gone).

    Temporary names carry the writer's process id (``.name.tmp-<pid>.ext``, ``*.<pid>-<tid>.raw``);
    files of processes still alive (another rank) are kept.
    """
    removed = []
    for path in out.iterdir():
        match = _TEMPORARY.search(path.name)
        if not match or not path.name.startswith(".") or not path.is_file():
            continue
        pid = int(match.group(1) or match.group(2))
        try:
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed
