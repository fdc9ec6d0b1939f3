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
import sys
from collections.abc import Callable
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


INTERRUPTED = "histoseg: interrupted (Ctrl-C); no partial file was kept: run the same command again to go on"
"""The one line (after ``error: ``) that a Ctrl-C prints, at any moment of the process's lifetime."""

_phase = "start"
"""Where the process is: ``start`` (importing, nothing written yet), ``running`` (a command runs: the
first SIGINT raises KeyboardInterrupt so that partial outputs are removed), ``interrupted`` (that
cleanup runs: more SIGINTs are ignored), ``finishing`` (the command's work is done, every output
complete: SIGINT is ignored and the process ends with the command's own status)."""


def _exit_interrupted() -> NoReturn:
    """Print the interrupt line with one system call and end the process without finalizing it."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001,S110 - a write in progress in the interrupted frame
            pass
    os.write(2, f"error: {INTERRUPTED}\n".encode())
    os._exit(130)


def _on_sigint(signum: int, frame: object) -> None:
    global _phase
    if _phase == "running":
        _phase = "interrupted"
        raise KeyboardInterrupt
    if _phase == "start":
        _exit_interrupted()
    # "interrupted": the first Ctrl-C's cleanup is running, its line is printed when it ends;
    # "finishing": the command's work is done, the process ends with its own status


def install_interrupt_handler() -> None:
    """Handle SIGINT from here to the end of the process.

    ``python -m histoseg`` calls this first, before any heavy import: until a command runs, a Ctrl-C
    prints the line and exits with 130.
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def run_interruptible(work: Callable[[], object], *, whole_process: bool) -> NoReturn:
    """Run a command; end with its exit status, or with 130 and :data:`INTERRUPTED` after a Ctrl-C.

    The first Ctrl-C while ``work`` runs raises KeyboardInterrupt in it (partial outputs are removed
    on the way out; later Ctrl-Cs are ignored meanwhile), and the line is printed once, here. A
    Ctrl-C that a library swallowed (Lightning catches KeyboardInterrupt and exits 1) still ends with
    130. Once ``work`` is done (every output complete) SIGINT is ignored, so none reaches the
    interpreter's shutdown (where CPython would die of it, exit -2, or abort with "Fatal Python error");
    the process ends with the command's status. An interrupted process ends without the interpreter's
    shutdown (``os._exit`` after flushing), which CPython could otherwise also turn into a death by SIGINT.

    Args:
        work: The command; it may raise SystemExit with its status.
        whole_process: True for ``python -m histoseg`` / the ``histoseg`` script: the handler stays
            until the process ends. False (``main([...])`` called in-process): the previous SIGINT
            handler is restored before returning.
    """
    global _phase
    import signal
    import threading

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if in_main else None
    code: object = 0
    try:
        try:
            _phase = "running"
            if in_main:
                signal.signal(signal.SIGINT, _on_sigint)
            try:
                work()
            except SystemExit as exc:
                code = exc.code
            except BaseException:
                if _phase != "interrupted":
                    raise
                # The interrupt's consequence, not a bug: a KeyboardInterrupt raised inside an import
                # leaves a half-initialised module, and the next line of that import (numpy's, say)
                # fails with an AttributeError that replaces it.
                raise KeyboardInterrupt from None
            if _phase == "interrupted":  # a library caught the KeyboardInterrupt
                raise KeyboardInterrupt
            _phase = "finishing"
            if whole_process and in_main:
                # Ignored, not handled: CPython resets a Python handler to the default (death by
                # SIGINT, no line) while it shuts down, but keeps an ignored signal ignored.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        except KeyboardInterrupt:
            _phase = "interrupted"
            if whole_process:
                # Not sys.exit: under ``python -m``, CPython ends a process whose KeyboardInterrupt was
                # raised inside exec() of a string (dataclasses and namedtuple make classes that way)
                # by SIGINT (exit -2) even when the exception was caught; the outputs are clean here.
                _exit_interrupted()
            print(f"error: {INTERRUPTED}", file=sys.stderr, flush=True)
            code = 130
    finally:
        if not whole_process:
            _phase = "start"
            if in_main and previous is not None:
                signal.signal(signal.SIGINT, previous)
    sys.exit(code)  # type: ignore[arg-type]  # an int, None or a SystemExit's own code
