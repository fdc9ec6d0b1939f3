"""Shared fixtures: paths to ../shared/data (skip when absent) and tiny seeded slides."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FLASH = SHARED / "flash-mouse-pas"
CMU = SHARED / "cmu1-small-region"

os.environ.setdefault("HISTOSEG_CACHE", str(ROOT / ".pytest_cache" / "histoseg-cache"))


def require(path: Path) -> Path:
    """Skip the test when a ../shared data path is absent (a user's machine)."""
    if not path.exists():
        pytest.skip(f"{path} not found (../shared/data is only present in the developers' checkout)")
    return path


@pytest.fixture
def flash() -> Path:
    return require(FLASH)


@pytest.fixture
def cmu() -> Path:
    return require(CMU)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def write_tiff_pyramid(
    path: Path, image: np.ndarray, mpp: float | None, levels: int = 2, tile: int = 64
) -> Path:
    """Write a tiled RGB TIFF pyramid (one page per level, 2x steps) with optional mpp tags."""
    import tifffile

    with tifffile.TiffWriter(path) as tif:
        data = image
        for level in range(levels):
            kwargs = {}
            if mpp is not None:
                kwargs = {
                    "resolution": (1e4 / (mpp * 2**level), 1e4 / (mpp * 2**level)),
                    "resolutionunit": "CENTIMETER",
                }
            tif.write(
                data,
                tile=(tile, tile),
                photometric="rgb",
                compression="deflate",
                subfiletype=1 if level else 0,
                **kwargs,
            )
            h, w = data.shape[:2]
            data = (
                data[: h // 2 * 2, : w // 2 * 2]
                .reshape(h // 2, 2, w // 2, 2, 3)
                .mean(axis=(1, 3))
                .astype(np.uint8)
            )
    return path


CLASS_COLOURS = np.array(
    [[245, 245, 245], [230, 150, 190], [180, 60, 140], [120, 30, 110], [90, 90, 200]], np.uint8
)


def make_labelled_slide(
    folder: Path, name: str, seed: int, size: tuple[int, int] = (320, 256), mpp: float = 0.5
):
    """A tiny slide whose pixels are a known function of its dense label mask (exact alignment tests).

    Returns (slide path, label path, labels (H, W) uint8).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    labels = np.zeros((h, w), np.uint8)
    labels[20:-20, 20:-20] = 1
    for _ in range(12):
        cy, cx = rng.integers(30, h - 30), rng.integers(30, w - 30)
        r = rng.integers(6, 18)
        yy, xx = np.ogrid[:h, :w]
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(2, 5)
    image = CLASS_COLOURS[labels]
    slide = write_tiff_pyramid(folder / f"{name}.tif", image, mpp)
    label_path = folder / f"{name}.png"
    Image.fromarray(labels).save(label_path)
    return slide, label_path, labels


@pytest.fixture
def table(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """``slides.csv`` of three labelled slides (``s0`` val, ``s1``, ``s2`` train) and their true masks by
    slide name (tests/test_datasets.py, tests/labels/test_table.py)."""
    rows = []
    truth = {}
    for i in range(3):
        slide, labels, mask = make_labelled_slide(tmp_path, f"s{i}", seed=i)
        rows.append({"slide": slide.name, "labels": labels.name, "split": "val" if i == 0 else "train"})
        truth[slide.name] = mask
    path = tmp_path / "slides.csv"
    with open(path, "w", newline="") as h:
        w = csv.DictWriter(h, fieldnames=["slide", "labels", "split"])
        w.writeheader()
        w.writerows(rows)
    return path, truth


@pytest.fixture(scope="session")
def tiny_kidney_root(tmp_path_factory) -> Path:
    """One short fit of configs/kidney.yaml with the tiny U-Net, shared by the tests that only need
    *a* trained checkpoint (its ``last.ckpt`` lies somewhere under the returned folder). Read-only:
    tests write their outputs elsewhere."""
    from tests.test_configs import fit_tiny_kidney

    root = tmp_path_factory.mktemp("tiny_kidney")
    assert fit_tiny_kidney(root, "--trainer.logger", "false") == 0
    return root


@pytest.fixture(scope="session")
def tiny_slide_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """tests/conf/tiny.yaml fitted (in this process) on one labelled slide, ``good.tif`` (seed 0),
    listed for train and val in ``slides.csv``: ``(that folder, the checkpoint)``. Read-only:
    tests write their outputs elsewhere."""
    folder = tmp_path_factory.mktemp("tiny_slide")
    make_labelled_slide(folder, "good", seed=0)
    (folder / "slides.csv").write_text(
        "slide,labels,kind,split,mpp\ngood.tif,good.png,dense,train,\ngood.tif,good.png,dense,val,\n"
    )
    args = ["fit", "--config", str(ROOT / "tests" / "conf" / "tiny.yaml")]
    args += ["--data.init_args.slides", str(folder / "slides.csv")]
    assert cli_exit_code([*args, "--trainer.default_root_dir", str(folder / "run")]) == 0
    return folder, next(folder.rglob("*.ckpt"))


def cli_exit_code(args: list[str]) -> int:
    """Exit status of ``python -m histoseg ARGS`` run through :func:`histoseg.cli.main` in this
    interpreter (no torch import per call)."""
    from histoseg.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
