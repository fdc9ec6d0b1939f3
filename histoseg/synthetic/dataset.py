"""Synthetic slides on disk: pyramidal TIFFs of a rendered slide, and cached datasets with a slide table."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from histoseg import KIDNEY_CLASSES
from histoseg.errors import ConfigError
from histoseg.io.files import atomic_path, ensure_writable_dir, safe_stem
from histoseg.io.text import write_slide_table
from histoseg.io.tiff import describe_label_map, write_pyramid_tiff
from histoseg.synthetic.params import (
    GENERATOR_VERSION,
    KIDNEY_COLORS,
    StainParams,
    TissueParams,
    check_params,
)
from histoseg.synthetic.render import render_slide


@dataclass
class SyntheticSlide:
    """One generated slide and its exact class areas.

    Attributes:
        image_path: RGB pyramidal TIFF (JPEG tiles, mpp in the resolution tags).
        label_path: uint8 label mask TIFF (palette, Deflate), same size as the image.
        mpp: Microns per pixel of level 0.
        width: Level-0 width in pixels.
        height: Level-0 height in pixels.
        pixel_counts: Class name -> number of pixels of that class in the label mask.
        areas_um2: Class name -> area in square microns (``pixels * mpp**2``).
        name: Slide name (file stem).
        seed: Seed the slide was rendered from.
        split: ``"train"``, ``"val"`` or ``"test"`` (set by :func:`generate_dataset`).
        objects: Object counts: ``tubules``, ``glomeruli``, ``arteries``, ``veins``.
    """

    image_path: Path
    label_path: Path
    mpp: float
    width: int
    height: int
    pixel_counts: dict[str, int]
    areas_um2: dict[str, float]
    name: str = ""
    seed: int = 0
    split: str = "train"
    objects: dict[str, int] = field(default_factory=dict)


def _class_stats(labels: np.ndarray, mpp: float) -> tuple[dict[str, int], dict[str, float]]:
    """Class name -> pixel count and -> area (um^2) of a (H, W) label map."""
    counts = np.bincount(labels.ravel(), minlength=len(KIDNEY_CLASSES))[: len(KIDNEY_CLASSES)]
    pixels = {name: int(c) for name, c in zip(KIDNEY_CLASSES, counts, strict=True)}
    areas = {name: float(c) * mpp * mpp for name, c in pixels.items()}
    return pixels, areas


def generate_slide(
    out_dir: str | os.PathLike[str],
    name: str,
    *,
    seed: int,
    width: int = 3072,
    height: int = 2304,
    mpp: float = 0.5,
    stain: StainParams | None = None,
    tissue: TissueParams | None = None,
) -> SyntheticSlide:
    """Render one slide and write ``<name>.tif`` and ``<name>.labels.tif`` into ``out_dir``.

    Args:
        out_dir: Output folder (created if needed).
        name: Slide name (file stem; made file-system safe).
        seed: Random seed (same seed and parameters -> identical files).
        width: Width in pixels.
        height: Height in pixels.
        mpp: Microns per pixel of level 0 (written in the TIFF resolution tags).
        stain: Colour parameters.
        tissue: Architecture parameters.

    Returns:
        The slide's paths, size and exact per-class pixel counts and areas.
    """
    folder = ensure_writable_dir(out_dir)
    stem = safe_stem(name)
    rendered = render_slide(seed=seed, width=width, height=height, mpp=mpp, stain=stain, tissue=tissue)
    stain = stain or StainParams()
    image_path = folder / f"{stem}.tif"
    label_path = folder / f"{stem}.labels.tif"
    write_pyramid_tiff(
        image_path,
        rendered.image,
        mpp,
        compression="jpeg",
        jpeg_quality=stain.jpeg_quality,
        description=f"histoseg synthetic PAS kidney cortex, seed {seed}, generator v{GENERATOR_VERSION}",
    )
    write_pyramid_tiff(
        label_path,
        rendered.labels,
        mpp,
        compression="deflate",
        interpolation="nearest",
        colormap=KIDNEY_COLORS,
        description=describe_label_map(KIDNEY_CLASSES, KIDNEY_COLORS),
    )
    pixels, areas = _class_stats(rendered.labels, mpp)
    return SyntheticSlide(
        image_path=image_path,
        label_path=label_path,
        mpp=float(mpp),
        width=int(width),
        height=int(height),
        pixel_counts=pixels,
        areas_um2=areas,
        name=stem,
        seed=int(seed),
        objects=rendered.objects,
    )


def _split_for(index: int, n: int) -> str:
    """Deterministic split: the last slide is test, the one before it val (when n >= 3)."""
    if n >= 3 and index == n - 1:
        return "test"
    if n >= 2 and index == n - 2 + (n < 3):
        return "val"
    return "train"


def _params_record(
    n_slides: int, seed: int, width: int, height: int, mpp: float, stain: StainParams, tissue: TissueParams
) -> dict[str, Any]:
    """The dataset parameters as JSON-ready values (their hash decides whether a cached dataset is reused)."""
    return {
        "generator_version": GENERATOR_VERSION,
        "n_slides": int(n_slides),
        "seed": int(seed),
        "width": int(width),
        "height": int(height),
        "mpp": float(mpp),
        "stain": dataclasses.asdict(stain),
        "tissue": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(tissue).items()},
    }


def _load_cached(root: Path, params_hash: str) -> list[SyntheticSlide] | None:
    """The slides of a complete dataset made with the same parameters, or None (absent, other, or damaged)."""
    manifest_path = root / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("params_hash") != params_hash:
        return None
    slides = []
    try:
        for rec in manifest["slides"]:
            image_path, label_path = root / rec["image"], root / rec["labels"]
            if (
                image_path.stat().st_size != rec["image_bytes"]
                or label_path.stat().st_size != rec["labels_bytes"]
            ):
                return None
            slides.append(
                SyntheticSlide(
                    image_path=image_path,
                    label_path=label_path,
                    mpp=float(rec["mpp"]),
                    width=int(rec["width"]),
                    height=int(rec["height"]),
                    pixel_counts={k: int(v) for k, v in rec["pixel_counts"].items()},
                    areas_um2={k: float(v) for k, v in rec["areas_um2"].items()},
                    name=rec["name"],
                    seed=int(rec["seed"]),
                    split=rec["split"],
                    objects=dict(rec.get("objects", {})),
                )
            )
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return slides


def generate_dataset(
    root: str | os.PathLike[str],
    *,
    n_slides: int = 6,
    seed: int = 0,
    width: int = 3072,
    height: int = 2304,
    mpp: float = 0.5,
    stain: StainParams | None = None,
    tissue: TissueParams | None = None,
) -> list[SyntheticSlide]:
    """Generate (or reuse) a dataset of synthetic slides with a manifest and a slide table.

    Writes ``root/synthetic_XX.tif``, ``root/synthetic_XX.labels.tif``, ``root/slides.csv``
    (columns ``slide, labels, split, mpp, width, height, seed``, then ``px_<class>`` and
    ``area_um2_<class>``; paths relative to ``root``) and ``root/manifest.json`` (written
    last: its presence marks a complete dataset). A complete dataset made with the same
    parameters (same ``params_hash``) is reused without writing anything.

    Splits: the last slide is ``test`` and the one before ``val`` (n >= 3); with two
    slides the second is ``val``.

    Args:
        root: Dataset folder.
        n_slides: Number of slides (>= 1).
        seed: Dataset seed; slide ``i`` uses a seed derived from ``(seed, i)``.
        width: Slide width in pixels.
        height: Slide height in pixels.
        mpp: Microns per pixel.
        stain: Colour parameters (each slide jitters them by ``stain.variation``).
        tissue: Architecture parameters.

    Returns:
        One :class:`SyntheticSlide` per slide, in order.
    """
    if not isinstance(n_slides, (int, np.integer)) or n_slides < 1:
        raise ConfigError(f"n_slides={n_slides!r}: generate at least one slide")
    stain = stain or StainParams()
    tissue = tissue or TissueParams()
    check_params(width, height, mpp, stain, tissue)
    folder = ensure_writable_dir(root)
    record = _params_record(n_slides, seed, width, height, mpp, stain, tissue)
    params_hash = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    cached = _load_cached(folder, params_hash)
    if cached is not None:
        return cached

    manifest_path = folder / "manifest.json"
    stale = _files_of_manifest(manifest_path)
    manifest_path.unlink(missing_ok=True)

    slides = []
    for i in range(n_slides):
        slide_seed = int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])
        slide = generate_slide(
            folder,
            f"synthetic_{i:02d}",
            seed=slide_seed,
            width=width,
            height=height,
            mpp=mpp,
            stain=stain,
            tissue=tissue,
        )
        slide.split = _split_for(i, n_slides)
        slides.append(slide)
    current = {p for s in slides for p in (s.image_path.name, s.label_path.name)}
    for name in stale - current:
        if "/" not in name and name.startswith("synthetic_"):
            (folder / name).unlink(missing_ok=True)
    _write_table(folder / "slides.csv", slides)
    _write_manifest(manifest_path, slides, params_hash, record)
    return slides


def _files_of_manifest(manifest_path: Path) -> set[str]:
    """Image and label file names listed by an existing manifest (empty if there is none or it is unreadable)."""
    stale: set[str] = set()
    try:
        for rec in json.loads(manifest_path.read_text()).get("slides", []):
            stale.update({str(rec.get("image")), str(rec.get("labels"))})
    except (OSError, ValueError, AttributeError):
        pass
    return stale


def _write_table(path: Path, slides: list[SyntheticSlide]) -> None:
    """Write the slide table ``slides.csv`` (paths relative to its folder, then each slide's statistics)."""
    write_slide_table(
        path,
        [
            {
                "slide": s.image_path.name,
                "labels": s.label_path.name,
                "split": s.split,
                "mpp": s.mpp,
                "width": s.width,
                "height": s.height,
                "seed": s.seed,
                **{f"px_{c}": s.pixel_counts[c] for c in KIDNEY_CLASSES},
                **{f"area_um2_{c}": repr(s.areas_um2[c]) for c in KIDNEY_CLASSES},
            }
            for s in slides
        ],
    )


def _write_manifest(
    path: Path, slides: list[SyntheticSlide], params_hash: str, record: dict[str, Any]
) -> None:
    """Write ``manifest.json`` (last: its presence marks a complete dataset), atomically."""
    manifest = {
        "dataset": "histoseg synthetic PAS kidney cortex",
        "params_hash": params_hash,
        "params": record,
        "classes": list(KIDNEY_CLASSES),
        "colors": KIDNEY_COLORS.tolist(),
        "slides": [
            {
                "name": s.name,
                "image": s.image_path.name,
                "labels": s.label_path.name,
                "split": s.split,
                "seed": s.seed,
                "mpp": s.mpp,
                "width": s.width,
                "height": s.height,
                "pixel_counts": s.pixel_counts,
                "areas_um2": s.areas_um2,
                "objects": s.objects,
                "image_bytes": s.image_path.stat().st_size,
                "labels_bytes": s.label_path.stat().st_size,
            }
            for s in slides
        ],
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
