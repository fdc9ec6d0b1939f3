"""What ``histoseg fit`` prints besides the progress bar (histoseg/console.py)."""

from __future__ import annotations

import contextlib
import io
import logging


def test_lightning_logs_follow_the_current_stderr_not_a_closed_one():
    """Lightning's handler keeps the stderr of Lightning's first import. In one process that runs
    commands with stderr swapped, that stream may be closed, and every Lightning log line became a
    "--- Logging error ---" traceback. (test_property_fit_slide_tables after test_readme.py still fails
    with such a traceback: another stale handler, not found yet.)"""
    import lightning.pytorch  # noqa: F401 - installs its handler

    from histoseg.console import quiet_lightning

    logger = logging.getLogger("lightning.pytorch")
    handler = logging.StreamHandler()
    old = io.StringIO()
    handler.stream = old
    old.close()  # the stderr capture of an earlier command, gone
    logger.addHandler(handler)
    try:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            quiet_lightning()  # what every fit/validate/test/predict does first
            logger.warning("a warning worth seeing")
        assert "Logging error" not in err.getvalue() and "Traceback" not in err.getvalue(), err.getvalue()
        assert "a warning worth seeing" in err.getvalue()
    finally:
        logger.removeHandler(handler)
