r"""Small file-system helpers shared by every writer.

Every output is written under a temporary name in its destination folder and
renamed into place only when complete, so a killed run never leaves a truncated
file that looks finished.

Example:
    >>> from histoseg.io.files import atomic_path
    >>> with atomic_path("out/report.csv") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("slide,class\\n")
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from histoseg.errors import HistosegError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.

    Args:
        path: Final destination.

    Yields:
        The temporary path to write to (same folder, same suffix, hidden name).
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HistosegError(
            f"{final.parent}: cannot create the output folder ({exc.strerror}); choose a writable folder"
        ) from None
    tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and check that files can be written in it.

    Raises:
        HistosegError: the folder cannot be created or written.
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HistosegError(
            f"{folder}: output folder is not writable ({exc.strerror}); choose another --out folder"
        ) from None
    return folder


def real_path(path: str | os.PathLike[str]) -> Path:
    """The absolute path with symbolic links followed; never raises (a link loop stays as is)."""
    return Path(os.path.realpath(path))


def path_keys(path: str | os.PathLike[str]) -> set[str]:
    """Both names of a path for identity checks: absolute as given, and with links followed."""
    return {os.path.abspath(path), str(real_path(path))}


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str) -> str:
    """Turn a slide file name into a file-name stem that cannot leave the output folder.

    Path separators, ``..`` and unusual characters are replaced, so
    ``out / (safe_stem(name) + ".labels.tif")`` always stays inside ``out``.
    """
    stem = _SAFE.sub("_", Path(name).name)
    stem = stem.strip("._") or "slide"
    return stem


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
