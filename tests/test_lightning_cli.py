"""lightning_cli.py: the default training precision follows the hardware, and fit fills only an unset precision."""

from __future__ import annotations

import pytest
import torch

import histoseg.inference.forward as forward


@pytest.mark.parametrize(
    ("accelerator", "native", "expected"),
    [("auto", True, "bf16-mixed"), ("cpu", True, "bf16-mixed"), ("auto", False, "32-true"),
     ("cpu", False, "32-true"), ("tpu", True, None)],
)  # fmt: skip
def test_default_training_precision_follows_amx_on_cpu(
    monkeypatch: pytest.MonkeyPatch, accelerator: str, native: bool, expected: str | None
) -> None:
    from histoseg.lightning_cli import default_training_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(forward, "cpu_has_amx", lambda: native)
    assert default_training_precision(accelerator) == expected


@pytest.mark.parametrize(("bf16_gpu", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_default_training_precision_on_cuda(
    monkeypatch: pytest.MonkeyPatch, bf16_gpu: bool, expected: str
) -> None:
    from histoseg.lightning_cli import default_training_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    monkeypatch.setattr(forward, "cpu_has_amx", lambda: not bf16_gpu)  # the GPU decides, not the CPU
    assert default_training_precision("auto") == expected
    assert default_training_precision("gpu") == expected


@pytest.mark.parametrize(
    ("subcommand", "given", "expected"),
    [("fit", None, "bf16-mixed"), ("fit", "32-true", "32-true"), ("validate", None, None)],
)
def test_fit_fills_only_an_unset_precision(
    monkeypatch: pytest.MonkeyPatch, subcommand: str, given: str | None, expected: str | None
) -> None:
    """The config's own value is kept; only ``fit`` chooses (validate/test/predict keep Lightning's fp32)."""
    from jsonargparse import Namespace

    from histoseg.lightning_cli import HistosegCLI

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(forward, "cpu_has_amx", lambda: True)
    config = Namespace(trainer=Namespace(precision=given, accelerator="cpu"))
    cli = type("FakeCLI", (), {"subcommand": subcommand, "config": Namespace(**{subcommand: config})})()
    HistosegCLI.before_instantiate_classes(cli)  # type: ignore[arg-type]
    assert config.trainer.precision == expected
