"""lightning_cli.py: the default training precision follows the hardware, fit fills only an unset precision, and
the flat data options of before fail with one line naming their new place."""

from __future__ import annotations

import pytest
import torch

import histoseg.inference.forward as forward
from histoseg.errors import ConfigError
from histoseg.lightning_cli import check_moved_options


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

@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data.brush_um", "3"], "--data.brush_um: moved to --data.labels.brush_um"),
        (
            ["--data.init_args.num_workers=2"],
            "--data.init_args.num_workers: moved to --data.init_args.loader.num_workers",
        ),
        (["--data.augment", "false"], "--data.augment: moved to --data.augmentation.enabled"),
    ],
)
def test_a_flat_data_flag_is_one_line_naming_its_new_place(args, message):
    with pytest.raises(ConfigError) as info:
        check_moved_options(["fit", *args])
    assert str(info.value).startswith(message) and "; use --data." in str(info.value)


def test_a_flat_config_key_names_the_file_and_the_group(tmp_path):
    config = tmp_path / "old.yaml"
    config.write_text("data:\n  class_path: x\n  init_args:\n    slides: t.csv\n    scribble_grow_um: 4\n")
    with pytest.raises(ConfigError) as info:
        check_moved_options(["fit", "--config", str(config)])
    assert str(info.value) == (
        f"{config}: data.init_args.scribble_grow_um moved to data.init_args.labels.grow_um (training options "
        "are grouped: labels, patches, weighting, augmentation, loader); write it as 'grow_um: ...' inside a "
        "'labels:' block under data.init_args"
    )


def test_grouped_options_and_other_files_pass(tmp_path):
    config = tmp_path / "new.yaml"
    config.write_text("data:\n  init_args:\n    mpp: 0.5\n    labels: {brush_um: 3}\n")
    check_moved_options(["fit", f"--config={config}", "--data.labels.brush_um", "2", "--data.mpp", "1"])
    check_moved_options(["fit", "--config", str(tmp_path / "missing.yaml")])  # the parser names it
    (tmp_path / "list.yaml").write_text("- a\n")
    check_moved_options(["fit", "--config", str(tmp_path / "list.yaml")])


def test_shipped_configs_are_grouped():
    from pathlib import Path

    for config in sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml")):
        check_moved_options(["fit", "--config", str(config)])
