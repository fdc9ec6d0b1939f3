"""The design record of a slide's counting points: ``<slide stem>.design.json``.

``histoseg sample`` writes it beside the points files and never changes what it recorded; each
round appends. It holds everything the estimator needs to know about how the points were drawn,
so the pathologist's points files only have to carry each point's name (its id) and class (a
QuPath GeoJSON export keeps both, but not a file-level record):

- the design (``grid``, ``random`` or ``stratified``), the counting frame and its strata
  (:class:`~histoseg.sampling.frame.CountingFrame`, compressed), the grid's origin and spacing;
- every point: id (``p0001``...), level-0 ``x, y``, round, stratum;
- every round: its seed, the points asked for and added, the allocation per stratum;
- where the frame came from: the label map's checkpoint, classes and resolution.

Rounds are nested: a grid round halves the spacing along one axis (the new grid contains the old
one), a random or stratified round adds fresh uniform points (within strata). The union of the
rounds counted so far is one sample of the recorded design (:meth:`PointDesign.sample`).

Example:
    >>> import numpy as np
    >>> from histoseg.sampling.frame import CountingFrame
    >>> from histoseg.sampling.design import new_design
    >>> frame = CountingFrame(np.zeros((2, 2), np.uint8), (50.0, 50.0), (100, 100), ("tissue",))
    >>> design = new_design("s.tif", "grid", frame, n=4, seed=1)
    >>> design.ids, design.sample(design.ids).kind
    (['p0001', 'p0002', 'p0003', 'p0004'], 'grid')
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from histoseg.errors import ConfigError, LabelError
from histoseg.io.files import atomic_path
from histoseg.sampling.allocation import allocate, anticipated_sd
from histoseg.sampling.frame import OUTSIDE, CountingFrame
from histoseg.sampling.placement import (
    Lattice,
    lattice_points,
    random_points,
    refine,
    square_lattice,
    stratified_points,
)
from histoseg.sampling.variance import DesignSample

DesignKind = Literal["grid", "random", "stratified"]
DESIGNS: tuple[str, ...] = ("grid", "random", "stratified")
FORMAT = "histoseg point design"
VERSION = 1
SUFFIX = ".design.json"


@dataclass
class PointDesign:
    """The points of one slide and how they were drawn (see the module docstring).

    Attributes:
        slide: The slide's file name.
        kind: ``grid``, ``random`` or ``stratified``.
        frame: The counting frame and its strata.
        ids: Point names, ``p0001``... in placement order.
        x: (n,) level-0 x of each point.
        y: (n,) level-0 y of each point.
        round: (n,) int round in which each point was added (1, 2, ...).
        stratum: (n,) int stratum of each point (0 for one-stratum frames).
        lattice: The grid after the last round (grid only).
        rounds: One record per round (seed, points asked, points added, allocation).
        source: Where the frame came from (checkpoint hash, classes, label-map mpp, strata rule).
    """

    slide: str
    kind: DesignKind
    frame: CountingFrame
    ids: list[str]
    x: np.ndarray
    y: np.ndarray
    round: np.ndarray
    stratum: np.ndarray
    lattice: Lattice | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def last_round(self) -> int:
        """Number of rounds drawn."""
        return int(self.round.max()) if len(self) else 0

    def grid_index(self) -> np.ndarray:
        """(n, 2) int64 grid indices of the points on the last round's lattice (grid only)."""
        if self.lattice is None:
            raise ValueError("grid_index: not a grid design")
        (ox, oy), (sx, sy) = self.lattice
        return np.stack([np.rint((self.x - ox) / sx), np.rint((self.y - oy) / sy)], axis=1).astype(np.int64)

    def sample(self, ids: Sequence[str], grid_variance: str = "matern") -> DesignSample:
        """The :class:`DesignSample` of the points named ``ids`` (a union of whole rounds)."""
        where = {name: i for i, name in enumerate(self.ids)}
        rows = np.array([where[name] for name in ids], dtype=np.int64)
        if self.kind == "stratified":
            return DesignSample.stratified(self.stratum[rows], self.frame.weights())
        if self.kind == "grid":
            return DesignSample.grid(self.grid_index()[rows], grid_variance)  # type: ignore[arg-type]
        return DesignSample.random(rows.size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "slide": self.slide,
            "design": self.kind,
            "lattice": None
            if self.lattice is None
            else {"origin": list(self.lattice.origin), "step": list(self.lattice.step)},
            "rounds": self.rounds,
            "source": self.source,
            "frame": self.frame.to_dict(),
            "points": [
                {"id": i, "x": float(x), "y": float(y), "round": int(r), "stratum": int(s)}
                for i, x, y, r, s in zip(
                    self.ids, self.x.tolist(), self.y.tolist(), self.round.tolist(), self.stratum.tolist(), strict=True
                )
            ],
        }


def _ids(start: int, count: int) -> list[str]:
    return [f"p{i:04d}" for i in range(start + 1, start + count + 1)]


def _today() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def new_design(
    slide: str,
    kind: DesignKind,
    frame: CountingFrame,
    *,
    n: int,
    seed: int,
    source: Mapping[str, Any] | None = None,
) -> PointDesign:
    """Draw the first round of ``about n`` points (exactly ``n`` for random and stratified).

    Stratified points are allocated by Neyman allocation with the anticipated impurities of
    :mod:`histoseg.sampling.allocation` (at least 2 per stratum).

    Raises:
        ConfigError: ``n`` < 1, or too small for the strata.
    """
    if n < 1:
        raise ConfigError(f"--n {n}: fewer than 1 point per slide; give at least 1, e.g. --n 100")
    rng = np.random.default_rng(seed)
    lattice = None
    counts: list[int] | None = None
    if kind == "grid":
        lattice = square_lattice(frame, n, rng)
        x, y, _ = lattice_points(frame, lattice)
        stratum = frame.locate(x, y).astype(np.int64)
    elif kind == "random":
        x, y = random_points(frame, n, rng)
        stratum = frame.locate(x, y).astype(np.int64)
    elif kind == "stratified":
        alloc = allocate(frame.weights(), n, anticipated_sd(frame.strata))
        counts = alloc.tolist()
        x, y, strata = stratified_points(frame, alloc, rng)
        stratum = strata.astype(np.int64)
    else:
        raise ConfigError(f"--design {kind}: not a design; choose one of {', '.join(DESIGNS)}")
    record: dict[str, Any] = {
        "round": 1,
        "seed": int(seed),
        "asked": int(n),
        "added": int(x.shape[0]),
        "allocation": counts,
        "allocation_rule": "Neyman, anticipated impurities" if counts is not None else None,
        "date": _today(),
    }
    if lattice is not None:
        record["spacing"] = list(lattice.step)
    return PointDesign(
        slide=slide,
        kind=kind,
        frame=frame,
        ids=_ids(0, x.shape[0]),
        x=x,
        y=y,
        round=np.ones(x.shape[0], np.int64),
        stratum=stratum,
        lattice=lattice,
        rounds=[record],
        source=dict(source or {}),
    )


def add_round(
    design: PointDesign,
    *,
    n: int,
    seed: int,
    counted_sd: np.ndarray | None = None,
) -> PointDesign:
    """A new round of points that repeats none of the earlier ones (a nested design).

    - grid: the spacing is halved along one axis until at least ``n`` new nodes are on the
      frame (so a round adds about as many points as there are, or three times as many...);
    - random: ``n`` fresh uniform points;
    - stratified: ``n`` fresh points, allocated by Neyman allocation with the standard
      deviations ``counted_sd`` measured on the points counted so far (the anticipated ones when
      None), at least 1 per stratum.

    Returns:
        A new :class:`PointDesign` with the round appended (the input is not changed).
    """
    if n < 1:
        raise ConfigError(f"--n {n}: fewer than 1 point to add; give at least 1")
    rng = np.random.default_rng(seed)
    taken = {(round(float(a), 2), round(float(b), 2)) for a, b in zip(design.x, design.y, strict=True)}
    number = design.last_round + 1
    lattice = design.lattice
    counts: list[int] | None = None
    rule = None
    if design.kind == "grid":
        assert lattice is not None
        old = len(design)
        while True:
            lattice = refine(lattice)
            x_all, y_all, _ = lattice_points(design.frame, lattice)
            if x_all.shape[0] - old >= n or not math.isfinite(lattice.step[0]):
                break
        known = {(round(float(a), 6), round(float(b), 6)) for a, b in zip(design.x, design.y, strict=True)}
        fresh = np.array(
            [(round(float(a), 6), round(float(b), 6)) not in known for a, b in zip(x_all, y_all, strict=True)]
        )
        x, y = x_all[fresh], y_all[fresh]
        stratum = design.frame.locate(x, y).astype(np.int64)
    elif design.kind == "random":
        x, y = random_points(design.frame, n, rng, taken)
        stratum = design.frame.locate(x, y).astype(np.int64)
    else:
        sd = anticipated_sd(design.frame.strata) if counted_sd is None else counted_sd
        rule = "Neyman, anticipated impurities" if counted_sd is None else "Neyman, counted standard deviations"
        alloc = allocate(design.frame.weights(), n, sd, minimum=1)
        counts = alloc.tolist()
        x, y, strata = stratified_points(design.frame, alloc, rng, taken)
        stratum = strata.astype(np.int64)
    record: dict[str, Any] = {
        "round": number,
        "seed": int(seed),
        "asked": int(n),
        "added": int(x.shape[0]),
        "allocation": counts,
        "allocation_rule": rule,
        "date": _today(),
    }
    if lattice is not None:
        record["spacing"] = list(lattice.step)
    return PointDesign(
        slide=design.slide,
        kind=design.kind,
        frame=design.frame,
        ids=design.ids + _ids(len(design), x.shape[0]),
        x=np.concatenate([design.x, x]),
        y=np.concatenate([design.y, y]),
        round=np.concatenate([design.round, np.full(x.shape[0], number, np.int64)]),
        stratum=np.concatenate([design.stratum, stratum]),
        lattice=lattice,
        rounds=[*design.rounds, record],
        source=design.source,
    )


def write_design(design: PointDesign, path: str | os.PathLike[str]) -> Path:
    """Write the record (atomically) as JSON."""
    final = Path(path)
    with atomic_path(final) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(design.to_dict(), handle, indent=1, allow_nan=False)
            handle.write("\n")
    return final


def is_design_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a readable design record written by histoseg (checked by its fields)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("version"), int)


def read_design(path: str | os.PathLike[str]) -> PointDesign:
    """Read a design record.

    Raises:
        LabelError: unreadable, not a design record, a newer format, or inconsistent points.
    """
    file = Path(path)
    try:
        with open(file, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise LabelError(f"{file}: cannot read the design record ({exc.strerror}); check the file") from None
    except ValueError:
        raise LabelError(
            f"{file}: not valid JSON; this file is written by 'histoseg sample': restore it or sample again"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LabelError(f"{file}: not a histoseg design record; give the .design.json written by 'histoseg sample'")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise LabelError(
            f"{file}: design record version {data.get('version')!r} is newer than this histoseg reads "
            f"({VERSION}); upgrade histoseg"
        )
    kind = data.get("design")
    if kind not in DESIGNS:
        raise LabelError(f"{file}: unknown design {kind!r}; this file is written by 'histoseg sample': sample again")
    frame = CountingFrame.from_dict(data.get("frame") or {}, str(file))
    try:
        points = data["points"]
        ids = [str(p["id"]) for p in points]
        x = np.array([float(p["x"]) for p in points], np.float64)
        y = np.array([float(p["y"]) for p in points], np.float64)
        rounds = np.array([int(p["round"]) for p in points], np.int64)
        stratum = np.array([int(p["stratum"]) for p in points], np.int64)
        lattice = None
        if kind == "grid":
            spec = data["lattice"]
            lattice = Lattice(
                (float(spec["origin"][0]), float(spec["origin"][1])),
                (float(spec["step"][0]), float(spec["step"][1])),
            )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise LabelError(
            f"{file}: a point or the grid is malformed ({type(exc).__name__}: {str(exc)[:60]}); "
            "this file is written by 'histoseg sample': restore it or sample again"
        ) from None
    if len(set(ids)) != len(ids) or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise LabelError(f"{file}: repeated point ids or non-finite coordinates; restore the file or sample again")
    if (frame.locate(x, y) == OUTSIDE).any() or (stratum >= len(frame.strata)).any():
        raise LabelError(f"{file}: a point lies outside its counting frame; restore the file or sample again")
    return PointDesign(
        slide=str(data.get("slide", "")),
        kind=kind,
        frame=frame,
        ids=ids,
        x=x,
        y=y,
        round=rounds,
        stratum=stratum,
        lattice=lattice,
        rounds=list(data.get("rounds") or []),
        source=dict(data.get("source") or {}),
    )


def crossfit_folds(design: PointDesign, folds: int, seed: int = 0) -> dict[str, int]:
    """Fold (0 .. folds-1) of every point for K-fold cross-fitting, balanced within round and stratum.

    Deterministic in ``(design, folds, seed)``: the points of each (round, stratum) group are
    shuffled with ``seed`` and dealt to the folds in turn, continuing the deal across groups, so
    every fold is a sample of the same design with (nearly) the same size.
    """
    if folds < 2:
        raise ConfigError(f"folds={folds}: fewer than 2 folds; cross-fitting needs at least 2")
    rng = np.random.default_rng(seed)
    out: dict[str, int] = {}
    dealt = 0
    groups = sorted({(int(r), int(s)) for r, s in zip(design.round, design.stratum, strict=True)})
    for r, s in groups:
        members = np.flatnonzero((design.round == r) & (design.stratum == s))
        for k in rng.permutation(members).tolist():
            out[design.ids[k]] = dealt % folds
            dealt += 1
    return out


__all__ = [
    "DESIGNS",
    "SUFFIX",
    "DesignKind",
    "PointDesign",
    "add_round",
    "crossfit_folds",
    "is_design_file",
    "new_design",
    "read_design",
    "write_design",
]
