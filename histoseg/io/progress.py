"""The one home of histoseg's progress display: rich bars on stderr when it is a terminal, one plain
line per finished slide when it is not (a log file, a batch job), and error lines that garble neither.

- :class:`Display`: the cohort bar and the current slide's tile bar of ``quantify``; without a
  terminal, one line per slide: ``slide 2/3 B.svs: ok, interstitial fraction 0.231, 41.2 s``.
- :func:`tile_bar`: one slide's tile bar (:func:`histoseg.inference.predict.predict_slide` alone).

``histoseg fit`` prints its own per-epoch lines without a terminal (:mod:`histoseg.lightning_cli`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any


def _rich_progress(transient: bool = False) -> Any:
    """A started-later rich ``Progress`` on stderr: description, bar, done/total, time left."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=transient,
    )


def tile_bar(enabled: bool, total: int, label: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    """``(advance(n), stop())`` of a transient tile bar on stderr; no-ops when disabled, when stderr is
    not a terminal or when there is nothing to run."""
    if not enabled or not sys.stderr.isatty() or total <= 0:
        return (lambda n: None), (lambda: None)
    bar = _rich_progress(transient=True)
    task = bar.add_task(label, total=total)
    bar.start()
    return (lambda n: bar.advance(task, n)), bar.stop


def slide_line(index: int, total: int, name: str, result: Mapping[str, Any] | None, seconds: float | None) -> str:
    """The line of one finished slide: ``slide 2/3 B.svs: ok, interstitial fraction 0.231, 41.2 s``.

    Args:
        index: 1-based position of the slide in this process's share of the cohort.
        total: Slides in that share.
        name: The slide's file name.
        result: Its result (``status``, ``interstitial_fraction``, ``error``); None = not known.
        seconds: Wall time spent on it; None = reused (complete outputs from an earlier run).
    """
    result = result or {}
    status = str(result.get("status", "done"))
    parts = [status if seconds is not None else f"{status} (reused: already complete)"]
    fraction = result.get("interstitial_fraction")
    if isinstance(fraction, (int, float)) and fraction == fraction:
        parts.append(f"interstitial fraction {fraction:.3f}")
    elif status != "ok" and result.get("error"):
        parts.append(str(result["error"]).splitlines()[0][:200])
    if seconds is not None:
        parts.append(f"{seconds:.1f} s")
    return f"slide {index}/{total} {name}: " + ", ".join(parts)


class Display:
    """Cohort and per-slide progress bars (rich, on stderr), or one line per slide when stderr is not a
    terminal, and error lines that do not garble them."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar: Any = None
        self.lines = enabled and not sys.stderr.isatty()
        self.total, self.done = total, 0
        self.name: str | None = None
        self.started: float | None = None
        if enabled and sys.stderr.isatty():
            self.bar = _rich_progress()
            self.cohort = self.bar.add_task("slides", total=total)
            self.slide = self.bar.add_task("", total=1, visible=False)
            self.bar.start()

    def start_slide(self, name: str) -> Callable[[int, int], None] | None:
        """Show the bar of slide ``name``; its ``(done, total)`` tile callback (None without bars)."""
        self.name, self.started = name, time.monotonic()
        if self.bar is None:
            return None
        self.bar.reset(self.slide, total=1, description=f"  {name}", visible=True)

        def update(done: int, total: int) -> None:
            self.bar.update(self.slide, completed=done, total=max(total, 1))

        return update

    def end_slide(self, result: Mapping[str, Any] | None = None, name: str | None = None) -> None:
        """Hide the slide bar and advance the cohort bar; without a terminal, print the slide's line.

        Args:
            result: The slide's result (status, interstitial fraction), for the line.
            name: The slide's file name when :meth:`start_slide` was not called (a reused slide).
        """
        self.done += 1
        if self.lines:
            seconds = time.monotonic() - self.started if self.started is not None and name is None else None
            line = slide_line(self.done, self.total, name or self.name or "?", result, seconds)
            print(line, file=sys.stderr, flush=True)
        self.name, self.started = None, None
        if self.bar is not None:
            self.bar.update(self.slide, visible=False)
            self.bar.advance(self.cohort)

    def error(self, line: str) -> None:
        """Print one error or warning line on stderr (above the bars)."""
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the bars."""
        if self.bar is not None:
            self.bar.stop()
