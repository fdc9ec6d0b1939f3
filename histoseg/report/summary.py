r"""The few lines a quantify run ends with: what was done, skipped and failed, how fast, where the report is.

:func:`run_summary` formats them from the per-slide results; ``histoseg quantify`` prints them on
stderr at the end of every run, also when stderr is not a terminal (a batch job's log then says
how the run ended), except with ``--no_progress`` (library calls with ``progress=False`` are
silent too; their errors are still printed).

Example:
    >>> lines = run_summary(
    ...     [{"slide": "a.svs", "status": "ok", "slide_dimensions": [2000, 1000]},
    ...      {"slide": "b.svs", "status": "failed", "error": "truncated file"}],
    ...     fresh=[True, True], seconds=4.0, report="out/index.html")
    >>> print("\n".join(lines))
    quantify: 2 slides: 1 done, 0 skipped (already complete), 1 failed; 4.0 s wall time, 4.0 s per slide done (0.5 Mpx/s)
      failed: b.svs: truncated file
    report: out/index.html
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["run_summary", "written_since"]


def run_summary(
    results: Sequence[Mapping[str, Any]],
    fresh: Sequence[bool],
    seconds: float,
    report: str | os.PathLike[str],
    max_failures: int = 10,
) -> list[str]:
    """Summary lines of a quantify run.

    Args:
        results: Per-slide result dicts (``slide``, ``status``, ``error``, ``slide_dimensions``).
        fresh: Per slide, whether it was processed in this run (False: reused, already complete).
        seconds: Wall time of the run (s).
        report: Path of the HTML report.
        max_failures: At most this many failures are listed (then a count of the rest).

    Returns:
        The lines (no newlines): totals and speed, one line per failure, the report path.
    """
    ok = [r.get("status") == "ok" for r in results]
    done = [i for i, r in enumerate(results) if ok[i] and fresh[i]]
    skipped = sum(o and not f for o, f in zip(ok, fresh, strict=True))
    failed = [r for r, o in zip(results, ok, strict=True) if not o]
    head = (
        f"quantify: {len(results)} slides: {len(done)} done, {skipped} skipped (already complete), "
        f"{len(failed)} failed; {seconds:.1f} s wall time"
    )
    if done:
        pixels = sum(_megapixels(results[i]) for i in done)
        head += f", {seconds / len(done):.1f} s per slide done ({pixels / max(seconds, 1e-9):.1f} Mpx/s)"
    lines = [head]
    for result in failed[:max_failures]:
        lines.append(
            f"  failed: {result.get('slide', '?')}: {' '.join(str(result.get('error', '')).split())}"
        )
    if len(failed) > max_failures:
        lines.append(f"  ... and {len(failed) - max_failures} more failed (see the report)")
    lines.append(f"report: {report}")
    return lines


def _megapixels(result: Mapping[str, Any]) -> float:
    """Level-0 megapixels of a slide (0 when unknown)."""
    size = result.get("slide_dimensions") or (0, 0)
    try:
        return float(size[0]) * float(size[1]) / 1e6
    except (TypeError, ValueError, IndexError):
        return 0.0


def written_since(path: str | os.PathLike[str], started: float) -> bool:
    """Whether ``path`` (a slide's result file, maybe another rank's) was written at or after ``started``.

    ``started`` is in seconds since the epoch (50 ms slack for file-system clocks). A missing file
    counts as written now (its slide failed in this run or is missing).
    """
    try:
        return os.stat(path).st_mtime >= started - 0.05
    except OSError:
        return True
