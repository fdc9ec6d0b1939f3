"""User-facing errors.

Every error a user can cause (missing file, unreadable slide, missing mpp, bad
config, wrong label values, out-of-range coordinates) is raised as a
:class:`HistosegError` whose message is one line ``<file or option>: <what>; <fix>``.
The command line prints it as ``error: <message>`` and exits with status 2,
without a traceback.

A message without the ``; <fix>`` part gets its class's generic fix appended
(:attr:`HistosegError.default_fix`), so no error line ever lacks one; raise sites
should still give a specific fix (``tests/reliability/test_error_messages.py`` checks them).
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class HistosegError(Exception):
    """An error caused by the user's input; its message is one line with the fix."""

    exit_code: int = 2
    default_fix: str = "check the value and run again ('histoseg COMMAND --help' lists the options)"

    def __init__(self, message: str) -> None:
        text = " ".join(str(message).split())
        if "; " not in text:
            text = f"{text}; {self.default_fix}"
        super().__init__(text)


class SlideError(HistosegError):
    """A slide cannot be opened or read, or has no resolution (mpp)."""

    default_fix = "check the slide file, or remove it from the slide list"


class LabelError(HistosegError):
    """A label file (mask, points, scribbles) is missing, malformed or inconsistent."""

    default_fix = "fix the label file (see docs/labels.md)"


class ConfigError(HistosegError):
    """A configuration value is invalid."""

    default_fix = "fix the option or configuration value ('histoseg COMMAND --help' lists the options)"


class CheckpointError(HistosegError):
    """A checkpoint is missing, unreadable, or not a histoseg checkpoint."""

    default_fix = "give the .ckpt written by 'histoseg fit'"


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error:`` line with the fix, like every other error.

    argparse itself prints a usage block and ``PROG: error: ...`` and exits; every histoseg command
    parses with this class instead, so a missing option or a non-number is a :class:`HistosegError`
    printed by the command line's one error path.
    """

    def error(self, message: str) -> NoReturn:
        """Raise the usage error as a :class:`ConfigError` (one line, exit status 2)."""
        raise ConfigError(f"{self.prog}: {message}; see '{self.prog} --help'")
