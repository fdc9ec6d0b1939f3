"""Shared fixtures: paths to ../shared/data (skip when absent) and tiny seeded slides."""

from __future__ import annotations

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
