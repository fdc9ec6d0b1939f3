"""errors.py: every error of the family ends in a fix; a message without one gets its class's generic fix."""

from __future__ import annotations

import pytest

from histoseg.errors import CheckpointError, ConfigError, HistosegError, LabelError, SlideError


@pytest.mark.parametrize("cls", [HistosegError, SlideError, LabelError, ConfigError, CheckpointError])
def test_fix_part_enforced_by_the_error_class(cls):
    message = str(cls("x.svs: something is wrong"))
    assert message.startswith("x.svs: something is wrong; ") and message.endswith(cls.default_fix)
    assert str(cls("a: b; do c")) == "a: b; do c"
    assert str(cls("a:\n  b;   do c")) == "a: b; do c"
