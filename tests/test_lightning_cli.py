"""histoseg/lightning_cli.py: checks made before LightningCLI parses (the moved flat data options)."""

import pytest

from histoseg.errors import ConfigError
from histoseg.lightning_cli import check_moved_options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data.brush_um", "3"], "--data.brush_um: moved to --data.labels.brush_um"),
        (["--data.init_args.num_workers=2"], "--data.init_args.num_workers: moved to --data.init_args.loader.num_workers"),
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
