"""Cross-fitting records: which counted points each fold model never saw.

``histoseg sample --crossfit K`` splits every slide's classified points into ``K`` folds
(:func:`histoseg.sampling.design.crossfit_folds`, balanced within round and stratum) and writes,
into ``<points>/crossfit/``, per fold ``k``: the training points (every fold but ``k``), a slide
table ``fold<k>.slides.csv`` and a fine-tuning config ``fold<k>.yaml``; and one manifest
``crossfit.json`` naming, per fold and slide, the held-out points and the design they came from.

A fold model fitted with ``fold<k>.yaml`` records that slide table in its checkpoint (the
datamodule's ``slides``), which is how ``quantify --crossfit`` finds its fold:
:func:`fold_of_checkpoint`. Cross-fitted PPI is then valid as long as the folds are a partition
of the points it uses and each fold's points were not in its model's training (Zrnic & Candès,
PNAS 2024).

Example:
    >>> from histoseg.report.crossfit import MANIFEST, is_manifest
    >>> MANIFEST
    'crossfit.json'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from histoseg.errors import HistosegError
from histoseg.io.files import atomic_path

FOLDER = "crossfit"
MANIFEST = "crossfit.json"
FORMAT = "histoseg cross-fitting folds"


def manifest_path(points: Path) -> Path:
    """``<points>/crossfit/crossfit.json``."""
    return points / FOLDER / MANIFEST


def is_manifest(path: Path) -> bool:
    """True when ``path`` is a manifest histoseg wrote (its ``format`` field, checked by type)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("folds"), int)


def write_manifest(path: Path, folds: int, seed: int, base_checkpoint: str, slides: dict[str, Any]) -> Path:
    """Write the manifest atomically.

    Args:
        path: ``<points>/crossfit/crossfit.json``.
        folds: Number of folds K.
        seed: Seed of the fold assignment.
        base_checkpoint: sha256 of the checkpoint the fold models start from.
        slides: Per slide stem: ``{"design_sha256": ..., "held_out": [[ids of fold 0], ...]}``.
    """
    data = {
        "format": FORMAT,
        "version": 1,
        "folds": int(folds),
        "seed": int(seed),
        "base_checkpoint_sha256": base_checkpoint,
        "tables": [f"fold{k}.slides.csv" for k in range(folds)],
        "slides": slides,
    }
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
    return path


def read_manifest(points: Path) -> dict[str, Any]:
    """The manifest of a points folder.

    Raises:
        HistosegError: no manifest (``histoseg sample --crossfit K`` was not run on it).
    """
    path = manifest_path(points)
    if not is_manifest(path):
        raise HistosegError(
            f"--crossfit: {path} not found or not written by histoseg; run 'histoseg sample --crossfit K "
            f"--ckpt_path CKPT --slides ... --out {points}' first and fit each fold"
        )
    with open(path, encoding="utf-8") as handle:
        return dict(json.load(handle))


def fold_of_checkpoint(points: Path, manifest: dict[str, Any], slides_table: Any, where: str) -> int:
    """The fold a fine-tuned checkpoint was trained for, from the slide table it recorded.

    Args:
        points: The ``--points`` folder.
        manifest: Its manifest (:func:`read_manifest`).
        slides_table: The checkpoint's ``datamodule_hyper_parameters["slides"]``.
        where: The checkpoint's path, for messages.

    Raises:
        HistosegError: the checkpoint was not trained on one of the manifest's fold tables.
    """
    folder = (points / FOLDER).resolve()
    if isinstance(slides_table, (str, os.PathLike)):
        trained = Path(slides_table).resolve()
        for k, name in enumerate(manifest["tables"]):
            if trained == folder / name:
                return k
    raise HistosegError(
        f"--crossfit {where}: not trained on a fold table of {folder} (its slide table: {slides_table}); "
        f"fit it with 'histoseg fit --config {folder}/fold<k>.yaml'"
    )


__all__ = ["FOLDER", "FORMAT", "MANIFEST", "fold_of_checkpoint", "is_manifest", "manifest_path", "read_manifest", "write_manifest"]
