"""The cache folder: one home for where histoseg keeps what it generates or prepares once.

``$HISTOSEG_CACHE`` when set, else ``~/.cache/histoseg``. Its subfolders:

- ``synthetic-kidney/`` — generated synthetic slides (:class:`histoseg.sources.SyntheticSlides`);
- ``prepared-labels/`` — labels put on a training grid, one folder per (slide, labels, options)
  content key (:mod:`histoseg.labels.store`), shared by every rank, restart and rerun.

Everything in it can be deleted at any time; it is made again when needed
(``histoseg doctor`` shows its size and the command that clears it).

Example:
    >>> import os
    >>> from histoseg.io.cache import cache_folder
    >>> os.environ["HISTOSEG_CACHE"] = "/tmp/hs-cache"
    >>> cache_folder()
    (PosixPath('/tmp/hs-cache'), 'HISTOSEG_CACHE')
"""

from __future__ import annotations

import os
from pathlib import Path

PREPARED_LABELS = "prepared-labels"
"""Subfolder of the cache holding prepared training labels."""


def cache_folder() -> tuple[Path, str]:
    """``(folder, where it comes from)``: ``$HISTOSEG_CACHE`` or ``~/.cache/histoseg``."""
    if os.environ.get("HISTOSEG_CACHE"):
        return Path(os.environ["HISTOSEG_CACHE"]).expanduser(), "HISTOSEG_CACHE"
    return Path.home() / ".cache" / "histoseg", "default; set HISTOSEG_CACHE to change"


def default_cache_dir() -> Path:
    """The cache folder (see :func:`cache_folder`)."""
    return cache_folder()[0]


def folder_bytes(path: Path) -> int:
    """Disk bytes of the regular files under ``path``, each hard-linked file once (0 when absent)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, _, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


__all__ = ["PREPARED_LABELS", "cache_folder", "default_cache_dir", "folder_bytes"]
