"""Cohort and per-slide progress bars (rich, on stderr) and error lines that do not garble them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class Display:
    """Cohort and per-slide progress bars (rich, on stderr) and error lines that do not garble them."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.cohort = self.bar.add_task("slides", total=total)
            self.slide = self.bar.add_task("", total=1, visible=False)
            self.bar.start()

    def start_slide(self, name: str) -> Callable[[int, int], None] | None:
        """Show the bar of slide ``name``; its ``(done, total)`` tile callback (None without bars)."""
        if self.bar is None:
            return None
        self.bar.reset(self.slide, total=1, description=f"  {name}", visible=True)

        def update(done: int, total: int) -> None:
            self.bar.update(self.slide, completed=done, total=max(total, 1))

        return update

    def end_slide(self) -> None:
        """Hide the slide bar and advance the cohort bar."""
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
