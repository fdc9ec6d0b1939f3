"""A slide's counted points: its points files matched to its design record.

The ``--points`` folder of ``quantify`` (and the ``--out`` folder of ``sample``) holds, per slide
stem, the design record ``<stem>.design.json`` written by ``histoseg sample`` and the points files
of each round (``<stem>.points.csv|geojson``, ``<stem>.points.round2.csv|geojson``...), classified
by the pathologist in QuPath or in the CSV. :func:`load_counted_points` reads them all and matches
every point to the design by its name (``p0001``...; by its position when a file has no names):

- a point classified in two files with two different classes is an error (which one is right?);
- a design point found at another position than the one recorded was moved: an error, since the
  design fixes where points are;
- points that are not in the design (added by hand) are left out, with a note;
- the estimate uses the **complete rounds**: rounds 1..k whose points are all classified; the
  points of a later round still being classified are counted in the report but not used.

Without a design record (points made by hand or by an older histoseg), every classified point is
used and the points are treated as uniform random points (``design = none``).

Example:
    >>> from pathlib import Path
    >>> from histoseg.report.counting import points_files
    >>> [p.name for p in points_files(Path("."), "nothing-here")]
    []
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from histoseg.errors import LabelError
from histoseg.labels.counted_points import UNCLASSIFIED, read_counted_points
from histoseg.sampling.design import SUFFIX, PointDesign, read_design
from histoseg.sampling.variance import DesignSample

MOVED_PX = 1.0
"""A design point found farther than this (level-0 px) from its recorded position was moved."""

_ROUND = re.compile(r"^\.points\.round(\d+)\.(csv|geojson|json)$", re.IGNORECASE)


def design_path(folder: Path, stem: str) -> Path:
    """``<folder>/<stem>.design.json``."""
    return folder / f"{stem}{SUFFIX}"


def points_key(folder: Path | None, stem: str) -> dict[str, str]:
    """Content hashes (sha256) of the slide's design record and points files, by file name.

    Part of ``quantify``'s resume key: adding, editing or removing a points file changes it, so a
    rerun never serves estimates from other points. Empty without a folder or files.
    """
    if folder is None:
        return {}
    paths = list(points_files(folder, stem))
    if design_path(folder, stem).is_file():
        paths.append(design_path(folder, stem))
    key = {}
    for path in sorted(paths):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        key[path.name] = digest.hexdigest()
    return key


def points_files(folder: Path, stem: str) -> list[Path]:
    """The slide's points files in ``folder``: ``<stem>.points.{csv,geojson,json}`` and later rounds'.

    Sorted: round 1 first, CSV before GeoJSON.
    """
    if not folder.is_dir():
        return []
    found: list[tuple[int, str, Path]] = []
    for path in folder.iterdir():
        name = path.name
        if not name.startswith(stem + ".points.") or not path.is_file():
            continue
        rest = name[len(stem) :]
        if rest.lower() in (".points.csv", ".points.geojson", ".points.json"):
            found.append((1, rest.lower(), path))
            continue
        match = _ROUND.match(rest)
        if match:
            found.append((int(match.group(1)), match.group(2).lower(), path))
    return [p for _, _, p in sorted(found, key=lambda t: (t[0], t[1]))]


@dataclass
class CountedSlide:
    """The points of one slide that the estimate uses, and what was left out.

    Attributes:
        design: The design record (None: points made without ``histoseg sample``).
        ids: Names of the points used (design ids; ``None`` entries without a design).
        x: (n,) level-0 x of the points used.
        y: (n,) level-0 y.
        label: (n,) uint8 the pathologist's class of each point used.
        rounds: Complete rounds used (0 without a design).
        pending: Points of later rounds not classified yet.
        files: The points files read.
        notes: Plain-language notes for the report (points left out and why).
    """

    design: PointDesign | None
    ids: list[str | None]
    x: np.ndarray
    y: np.ndarray
    label: np.ndarray
    rounds: int
    pending: int
    files: list[Path]
    notes: list[str] = field(default_factory=list)

    @property
    def design_name(self) -> str:
        """``grid``, ``random``, ``stratified``, or ``none`` (no design record)."""
        return self.design.kind if self.design is not None else "none"

    def sample(self, grid_variance: str = "matern") -> DesignSample:
        """The :class:`DesignSample` of the points used (uniform random without a design)."""
        if self.design is None:
            return DesignSample.random(len(self.ids))
        return self.design.sample([str(i) for i in self.ids], grid_variance)


def _match_by_position(design: PointDesign, x: float, y: float) -> str | None:
    d2 = (design.x - x) ** 2 + (design.y - y) ** 2
    k = int(np.argmin(d2)) if d2.size else -1
    return design.ids[k] if k >= 0 and d2[k] <= 0.25 else None


def load_counted_points(
    folder: Path, stem: str, classes: Sequence[str], slide_size: tuple[int, int] | None = None
) -> CountedSlide | None:
    """The slide's counted points (see the module docstring); None when it has no points file.

    Args:
        folder: The points folder.
        stem: The slide's file stem.
        classes: The model's class names (point classes are looked up among them).
        slide_size: Level-0 ``(width, height)`` of the slide (checked against the design).

    Raises:
        LabelError: conflicting classes, a moved point, a design for another slide size, points
            outside the slide, or a malformed file.
    """
    files = points_files(folder, stem)
    record = design_path(folder, stem)
    design = read_design(record) if record.is_file() else None
    if not files:
        if design is not None:
            raise LabelError(
                f"{record}: the design has no points file beside it ({stem}.points.geojson or .csv); "
                "put the classified points next to it, or remove the design record"
            )
        return None
    if design is not None and slide_size is not None and tuple(design.frame.slide_size) != tuple(slide_size):
        raise LabelError(
            f"{record}: made for a slide of {design.frame.slide_size[0]} x {design.frame.slide_size[1]} px, "
            f"but this slide is {slide_size[0]} x {slide_size[1]}; the points belong to another slide"
        )
    notes: list[str] = []
    if design is None:
        return _without_design(files, classes, slide_size, notes)
    index = {name: i for i, name in enumerate(design.ids)}
    label = np.full(len(design), UNCLASSIFIED, np.uint8)
    seen_in: dict[int, Path] = {}
    foreign = 0
    for path in files:
        points = read_counted_points(path, classes)
        for name, px, py, lab in zip(points.names, points.x.tolist(), points.y.tolist(), points.label.tolist(), strict=True):
            key = name if name in index else _match_by_position(design, px, py)
            if key is None:
                foreign += 1
                continue
            k = index[key]
            if math.hypot(px - design.x[k], py - design.y[k]) > MOVED_PX:
                raise LabelError(
                    f"{path}: point {key} is at ({px:.1f}, {py:.1f}) but was placed at "
                    f"({design.x[k]:.1f}, {design.y[k]:.1f}); the design fixes where points are: "
                    "move it back (or import the points again) and classify it where it was placed"
                )
            if lab == UNCLASSIFIED:
                continue
            if label[k] != UNCLASSIFIED and label[k] != lab:
                raise LabelError(
                    f"{path}: point {key} is '{classes[lab]}' here but '{classes[label[k]]}' in "
                    f"{seen_in[k].name}; correct the class in one of the two files"
                )
            label[k] = lab
            seen_in[k] = path
    if foreign:
        notes.append(f"{foreign} point(s) not placed by 'histoseg sample' were left out")
    complete = 0
    for r in range(1, design.last_round + 1):
        if (label[design.round == r] == UNCLASSIFIED).any():
            break
        complete = r
    used = design.round <= complete
    pending = int(((design.round > complete) & (label == UNCLASSIFIED)).sum())
    if pending:
        notes.append(
            f"{pending} point(s) of round {complete + 1} not classified yet: "
            + ("no complete round to estimate from" if complete == 0 else f"the estimate uses rounds 1-{complete}")
        )
    return CountedSlide(
        design=design,
        ids=[design.ids[k] for k in np.flatnonzero(used).tolist()],
        x=design.x[used],
        y=design.y[used],
        label=label[used],
        rounds=complete,
        pending=pending,
        files=files,
        notes=notes,
    )


def _without_design(
    files: list[Path], classes: Sequence[str], slide_size: tuple[int, int] | None, notes: list[str]
) -> CountedSlide:
    names: list[str | None] = []
    xs: list[float] = []
    ys: list[float] = []
    labels: list[int] = []
    skipped = 0
    for path in files:
        points = read_counted_points(path, classes)
        for name, px, py, lab in zip(points.names, points.x.tolist(), points.y.tolist(), points.label.tolist(), strict=True):
            if lab == UNCLASSIFIED:
                skipped += 1
                continue
            if slide_size is not None and not (0 <= px < slide_size[0] and 0 <= py < slide_size[1]):
                raise LabelError(
                    f"{path}: point at ({px:g}, {py:g}) is outside the slide ({slide_size[0]} x {slide_size[1]} px); "
                    "coordinates must be level-0 pixels of this slide"
                )
            names.append(name)
            xs.append(px)
            ys.append(py)
            labels.append(lab)
    if skipped:
        notes.append(f"{skipped} unclassified point(s) left out")
    notes.append("no design record: the points are treated as uniform random points")
    return CountedSlide(
        design=None,
        ids=names,
        x=np.array(xs, np.float64),
        y=np.array(ys, np.float64),
        label=np.array(labels, np.uint8),
        rounds=0,
        pending=0,
        files=files,
        notes=notes,
    )


def _named_stem(name: str) -> str | None:
    """The slide stem a points-folder file names (``S0.points.csv`` -> ``S0``), None for other files."""
    lower = name.lower()
    if lower.endswith(SUFFIX):
        return name[: -len(SUFFIX)] or None
    at = lower.rfind(".points.")
    rest = lower[at:] if at > 0 else ""
    if rest in (".points.csv", ".points.geojson", ".points.json") or _ROUND.match(rest):
        return name[:at]
    return None


def unmatched_points_files(folder: Path, slide_names: Sequence[str]) -> list[str]:
    """Why each design record or points file of ``folder`` that matches no slide is not used.

    One line ``<file>: <what>; <fix>`` per file (the points of a slide are matched by its exact file stem).

    Args:
        folder: The ``--points`` folder.
        slide_names: File names of the slides of the run (``s0.tif``).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("s0.points.csv", "S1.points.csv", "s9.design.json"):
        ...     _ = (folder / name).write_text("")
        >>> [line.split(":")[0].rsplit("/", 1)[-1] for line in unmatched_points_files(folder, ["s0.tif", "s1.tif"])]
        ['S1.points.csv', 's9.design.json']
    """
    stems = {Path(name).stem: name for name in slide_names}
    folded: dict[str, list[str]] = {}
    for stem, name in stems.items():
        folded.setdefault(stem.casefold(), []).append(name)
    lines = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        named = _named_stem(path.name)
        if named is None or path.name.startswith(".") or not path.is_file() or named in stems:
            continue
        alike = folded.get(named.casefold())
        if alike:
            right = path.name.replace(named, Path(alike[0]).stem, 1)
            lines.append(
                f"{path}: differs only in case from the slide {alike[0]}, so it is not used; rename it {right}"
            )
        else:
            lines.append(
                f"{path}: names no slide of --slides (no slide file {named}.*), so it is not used; add that "
                "slide to --slides, or rename the file after its slide's file name"
            )
    return lines


__all__ = [
    "MOVED_PX",
    "CountedSlide",
    "design_path",
    "load_counted_points",
    "points_files",
    "points_key",
    "unmatched_points_files",
]
