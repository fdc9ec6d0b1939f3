"""histoseg.console: the lines `fit` prints when its output goes to a log file (the callback is in lightning_cli)."""

from __future__ import annotations

import re

from conftest import ROOT, cli_exit_code

from histoseg.console import epoch_line


def test_epoch_line_known_answers():
    metrics = {"val_dice": 0.80149, "val_loss": 0.31234}
    assert epoch_line(3, 6, 0.41234, metrics, 212.4) == (
        "epoch 3/6: train loss 0.4123, val loss 0.3123, val Dice 0.801, 212 s"
    )
    assert epoch_line(1, -1, None, {}, 2.34) == "epoch 1: 2.3 s"


def test_fit_without_a_terminal_prints_one_line_per_epoch(tiny_slide_checkpoint, tmp_path, capsys):
    """Under pytest stdout is not a terminal, as with ``histoseg fit ... > fit.log``: one line per epoch
    with the mean train loss, the validation Dice and the time, and no progress-bar frames."""
    folder, _ = tiny_slide_checkpoint
    args = ["fit", "--config", str(ROOT / "tests" / "conf" / "tiny.yaml"), "--data.init_args.slides"]
    args += [str(folder / "slides.csv"), "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(tmp_path)]
    capsys.readouterr()
    assert cli_exit_code(args) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    pattern = r"epoch {}/2: train loss \d+\.\d{{4}}, val loss \d+\.\d{{4}}, val Dice \d\.\d{{3}}, \d+\.\d s"
    assert len(lines) == 2, out
    for k, line in enumerate(lines, 1):
        assert re.fullmatch(pattern.format(k), line), line
    assert "\r" not in out and "it/s" not in out
