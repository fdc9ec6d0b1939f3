"""User-facing errors.

Every error a user can cause (missing file, unreadable slide, missing mpp, bad
config, wrong label values, out-of-range coordinates) is raised as a
:class:`HistosegError` whose message is one line naming the file or option and
the fix. The command line prints it as ``error: <message>`` and exits with
status 2, without a traceback.
"""

from __future__ import annotations


class HistosegError(Exception):
    """An error caused by the user's input; its message is one line with the fix."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class SlideError(HistosegError):
    """A slide cannot be opened or read, or has no resolution (mpp)."""


class LabelError(HistosegError):
    """A label file (mask, points, scribbles) is missing, malformed or inconsistent."""


class ConfigError(HistosegError):
    """A configuration value is invalid."""


class CheckpointError(HistosegError):
    """A checkpoint is missing, unreadable, or not a histoseg checkpoint."""
