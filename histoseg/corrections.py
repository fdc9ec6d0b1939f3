"""``histoseg corrections``: QuPath-corrected GeoJSON -> training labels (docs/qupath.md).

The command reads the prediction and the corrected export, checks every geometry, keeps only the
corrections (:func:`histoseg.labels.corrections.extract_corrections`, the pure comparison) and
writes them atomically as a scribble GeoJSON that no other file may be mistaken for.

Example:
    >>> from histoseg.corrections import main
    >>> main(["--predicted", "a.geojson", "--corrected", "b.geojson", "--out", "labels.geojson"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from histoseg.errors import ArgumentParser, ConfigError, LabelError
from histoseg.io.files import atomic_path
from histoseg.io.ownership import FieldSpec, is_owned_json
from histoseg.labels.annotations import check_geometry, feature_label, load_geojson_features
from histoseg.labels.corrections import CorrectionStats, extract_corrections

__all__ = ["main", "write_corrections"]

MARK = "histoseg_corrections"
"""Top-level key of the files written here: the ownership record (:data:`RECORD`)."""
RECORD: dict[str, FieldSpec] = {"type": str, MARK: {"predicted": str, "corrected": str, "tolerance": float}, "features": list}
"""A file is this command's output when it has these fields of these types
(:func:`histoseg.io.ownership.has_record`); any other file is never overwritten."""


def _check_output(out: Path, inputs: Sequence[Path]) -> None:
    if any(out.resolve() == p.resolve() for p in inputs):
        raise ConfigError(f"{out}: --out is one of the input files; give a new file, e.g. labels.geojson")
    if out.suffix.lower() not in (".geojson", ".json"):
        raise ConfigError(f"{out}: --out must end in .geojson; give e.g. --out labels.geojson")
    if out.exists() or out.is_symlink():
        if out.is_symlink() or not is_owned_json(out, RECORD):
            raise ConfigError(
                f"{out}: exists and was not written by 'histoseg corrections'; choose another --out"
            )


def write_corrections(
    predicted: str | os.PathLike[str],
    corrected: str | os.PathLike[str],
    out: str | os.PathLike[str],
    tolerance: float = 0.5,
) -> CorrectionStats:
    """Read both GeoJSON files, keep the corrections (:func:`extract_corrections`), write ``out`` atomically.

    Raises:
        LabelError: unreadable input, or no correction at all in the corrected file.
        ConfigError: ``out`` is an input, has the wrong suffix, or is a file histoseg did not write.
    """
    if not tolerance >= 0:
        raise ConfigError(f"--tolerance {tolerance}: must be >= 0 (level-0 pixels); e.g. --tolerance 0.5")
    predicted, corrected, out = Path(predicted), Path(corrected), Path(out)
    _check_output(out, [predicted, corrected])
    features, stats = extract_corrections(
        _load_checked(predicted, "prediction"), _load_checked(corrected, "corrections"), tolerance
    )
    if not features:
        raise LabelError(
            f"{corrected}: no corrected feature ({stats.unchanged} untouched predictions, "
            f"{stats.unclassified} unclassified); correct regions in QuPath, set their class, and export again"
        )
    document = {
        "type": "FeatureCollection",
        MARK: {"predicted": predicted.name, "corrected": corrected.name, "tolerance": tolerance},
        "features": features,
    }
    try:
        with atomic_path(out) as tmp:
            Path(tmp).write_text(json.dumps(document), encoding="utf-8")
    except OSError as exc:  # a folder that cannot hold files, read-only, disk full
        raise ConfigError(
            f"{out}: cannot write the labels ({exc.strerror or exc}); choose a writable folder for --out"
        ) from None
    return stats


def _load_checked(path: Path, what: str) -> list[dict[str, Any]]:
    """The file's features, every geometry checked (:func:`check_geometry`) before shapely sees it."""
    features = load_geojson_features(path, what)
    for i, feature in enumerate(features):
        check_geometry(feature.get("geometry"), f"{path}: {feature_label(feature, i)}")
    return features


def main(argv: Sequence[str]) -> int:
    """``histoseg corrections --predicted A.geojson --corrected B.geojson --out labels.geojson``."""
    parser = ArgumentParser(
        prog="histoseg corrections",
        description="Keep only what was corrected in QuPath (new, redrawn or reclassified annotations, strokes) "
        "as training labels for a fine-tune (slide table kind=scribbles); see docs/qupath.md.",
    )
    parser.add_argument(
        "--predicted", required=True, help="the GeoJSON 'histoseg quantify' wrote for the slide"
    )
    parser.add_argument(
        "--corrected", required=True, help="the GeoJSON exported from QuPath after correcting"
    )
    parser.add_argument("--out", required=True, help="labels to write (.geojson)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.5,
        help="level-0 pixels a boundary may move and count as untouched",
    )
    parsed = parser.parse_args(list(argv))
    stats = write_corrections(parsed.predicted, parsed.corrected, parsed.out, parsed.tolerance)
    classes = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_class.items()))
    print(
        f"corrections: {stats.kept} labels ({classes}) -> {parsed.out}; dropped {stats.unchanged} untouched "
        f"predictions, {stats.unclassified} unclassified, {stats.empty} empty",
        file=sys.stderr,
    )
    return 0
