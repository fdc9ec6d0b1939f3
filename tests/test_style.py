"""CI checks the code, not only the tests: ruff and mypy run from .ci/run with the ``tests`` extra, and a
DeprecationWarning raised from histoseg's own code fails the test run while other packages' are ignored."""

import re
import tomllib
import warnings

import pytest

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_ci_runs_ruff_and_mypy_before_the_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    steps = [line for line in ci.splitlines() if line.startswith("python -m ")]
    assert steps[-3:] == ["python -m ruff check .", "python -m mypy", "python -m pytest"]
    extra = " ".join(PYPROJECT["project"]["optional-dependencies"]["tests"])
    assert re.search(r"\bruff>=", extra) and re.search(r"\bmypy>=", extra)  # installed by .ci/run
    assert PYPROJECT["tool"]["mypy"]["files"] == ["histoseg"]
    assert {"E", "F", "W", "I", "B", "UP"} <= set(PYPROJECT["tool"]["ruff"]["lint"]["select"])


def _warn(module: str) -> None:
    """A DeprecationWarning as if raised from ``module``'s code."""
    warnings.warn_explicit("old API", DeprecationWarning, f"{module.replace('.', '/')}.py", 1, module=module)


@pytest.mark.parametrize("module", ["histoseg", "histoseg.io.files", "histoseg.synthetic.render"])
def test_a_deprecation_in_histoseg_code_is_an_error(module):
    with pytest.raises(DeprecationWarning, match="old API"):
        _warn(module)


@pytest.mark.parametrize(
    "module", ["numpy.core", "lightning.pytorch.trainer", "histoseg_other", "tests.test_style"]
)
def test_a_deprecation_elsewhere_is_ignored(module):
    _warn(module)  # no error: the configured filters ignore it
