"""Shared pieces of the hostile-input tests: a tiny checkpoint made without training, in-process CLI runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from histoseg import KIDNEY_CLASSES
from histoseg.cli import main

NETWORK = {
    "num_classes": 5,
    "arch": "unet",
    "encoder": "resnet18",
    "encoder_depth": 3,
    "decoder_channels": [16, 8, 8],
}


def tiny_checkpoint(
    path: Path, *, mpp: float = 2.0, favour: int | None = 1, nan: bool = False, **block
) -> Path:
    """A histoseg checkpoint of an untrained tiny U-Net (seeded), written in well under a second.

    Args:
        path: Where to write it.
        mpp: Its resolution.
        favour: Class whose head bias is raised by 50 (it wins everywhere); None = untouched.
        nan: Put NaN in the head weights (a diverged training: NaN logits).
        **block: Overrides of the histoseg block (to test damaged checkpoints).
    """
    from histoseg.inference.checkpoint import build_network

    torch.manual_seed(0)
    base = {
        "version": "0.1.0",
        "task": "segmentation",
        "classes": list(KIDNEY_CLASSES),
        "mpp": mpp,
        "patch_size": 64,
        "network": dict(NETWORK),
        "seed": 0,
    }
    network = build_network(base)
    state = network.state_dict()
    if favour is not None:
        state["net.segmentation_head.0.bias"][favour] += 50.0
    if nan:
        state["net.segmentation_head.0.weight"].fill_(math.nan)
    base.update(block)
    torch.save({"histoseg": base, "state_dict": {f"network.{k}": v for k, v in state.items()}}, path)
    return path


def run(capsys, *args: object) -> tuple[int, list[str], str]:
    """``histoseg ARGS`` in-process: (exit status, its ``error:`` lines, all of stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    err = capsys.readouterr().err
    return code, [ln for ln in err.splitlines() if ln.startswith("error: ")], err


def expect_one_error(capsys, needles, *args: object, code: int = 2) -> str:
    """Run and check: exit ``code``, exactly one error line holding every needle, no traceback."""
    status, lines, err = run(capsys, *args)
    assert status == code, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file under ``folder`` (to prove they were not touched)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


class _CurrentStderr:
    """A stream that writes to whatever sys.stderr is now (pytest swaps it per test)."""

    def write(self, text):
        import sys

        return sys.stderr.write(text)

    def flush(self):
        import sys

        sys.stderr.flush()


def point_library_logs_at_current_stderr() -> None:
    """Point every plain StreamHandler of every logger at whatever ``sys.stderr`` is now."""
    import logging

    loggers = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in [*loggers, logging.getLogger()]:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = _CurrentStderr()


@pytest.fixture(autouse=True)
def library_logs_follow_capture():
    """Library log handlers keep the stderr of the first in-process run; make them follow the test's.

    Before the test (handlers left by earlier tests) and after it (handlers this test's run made).
    """
    point_library_logs_at_current_stderr()
    yield
    point_library_logs_at_current_stderr()
