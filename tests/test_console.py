"""Terminal output of fit: no Lightning banners or tips, a user error is one stderr line, a finished fit ends
with the summary (checkpoints, validation Dice per class, the quantify command to run next), and without a
terminal one line per epoch."""

import contextlib
import io
import logging
import re
import shlex
from pathlib import Path

import pytest

from histoseg.cli import main
from histoseg.console import LightningNoise, epoch_line, fit_summary
from histoseg.lightning_cli import default_training_precision
from tests.conftest import ROOT, cli_exit_code, make_labelled_slide
from tests.reliability.helpers import library_logs_follow_capture  # noqa: F401 (autouse fixture)

TINY = str(ROOT / "tests" / "conf" / "tiny.yaml")
CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]
BANNERS = ("GPU available", "TPU available", "HPU available", "Tip:", "litlogger", "litmodels", "Seed set to")


def run(*args):
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.mark.parametrize(
    "message, dropped",
    [
        ("GPU available: False, used: False", True),
        ("TPU available: False, using: 0 TPU cores", True),
        ("HPU available: False, using: 0 HPUs", True),
        ("💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels](https://pypi.org/project/litmodels/)", True),
        ("You are using a CUDA device ('NVIDIA A100') that has Tensor Cores.", True),
        ("Seed set to 0", True),
        ("`Trainer(limit_val_batches=1)` was configured so 1 batch will be used.", True),
        ("Restoring states from the checkpoint path at run/last.ckpt", False),
        ("init_checkpoint x.ckpt has classes [...]", False),
    ],
)  # fmt: skip
def test_noise_filter(message, dropped):
    record = logging.LogRecord("lightning.pytorch", logging.INFO, "", 0, message, None, None)
    assert LightningNoise().filter(record) is (not dropped)
    warning = logging.LogRecord("lightning.pytorch", logging.WARNING, "", 0, message, None, None)
    assert LightningNoise().filter(warning) is True  # warnings always pass


@pytest.fixture
def slides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_labelled_slide(tmp_path, "a", seed=0)
    make_labelled_slide(tmp_path, "b", seed=1)
    (tmp_path / "slides.csv").write_text(
        "slide,labels,kind,split,mpp\na.tif,a.png,dense,train,0.5\nb.tif,b.png,dense,val,0.5\n"
    )
    return tmp_path


def test_bad_option_is_one_stderr_line(slides, capsys):
    code = run("fit", "--config", TINY, "--data.init_args.slides", "slides.csv", "--trainer.max_steps", "-3")
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    # histoseg's own check names the option before Lightning sees it (no Lightning banner, no traceback)
    assert lines == [
        "error: trainer.max_steps=-3: must be at least 1 (or -1 for no limit); e.g. --trainer.max_steps 10"
    ]


def test_fit_is_quiet_and_ends_with_the_summary(slides, capsys):
    tmp_path = slides
    code = run("fit", "--config", TINY, "--data.init_args.slides", "slides.csv", "--trainer.default_root_dir", "run",
               "--trainer.enable_progress_bar", "false",
               "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint", "--trainer.callbacks.monitor",
               "val_dice", "--trainer.callbacks.mode", "max", "--trainer.callbacks.save_last", "true")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    for banner in BANNERS:
        assert banner not in err
    lines = err.strip().splitlines()[-5:]
    best = Path(next(iter((tmp_path / "run").rglob("epoch=*.ckpt")))).relative_to(tmp_path)
    # tiny.yaml leaves trainer.precision unset: histoseg picks it for the hardware (accelerator cpu)
    assert lines[0] == f"fit: done, 1 epoch, 2 optimizer steps, precision {default_training_precision('cpu')}"
    assert re.fullmatch(rf"  best checkpoint: {re.escape(str(best))} \(val_dice \d\.\d{{3}}\)", lines[1]), (
        lines[1]
    )
    assert lines[2] == "  last checkpoint: run/checkpoints/last.ckpt"
    dice = re.fullmatch(r"  validation Dice (\d\.\d{3}): (.*)", lines[3])
    assert dice, lines[3]
    assert [part.split()[0] for part in dice.group(2).split(", ")] == CLASSES
    assert (
        lines[4]
        == f"next: histoseg quantify --ckpt_path {shlex.quote(str(best))} --slides '*.tif' --out results"
    )  # the slide table's training slides are TIFFs in the working folder
    assert (tmp_path / best).is_file() and (tmp_path / "run/checkpoints/last.ckpt").is_file()


def test_summary_without_checkpoints_or_validation():
    class Trainer:
        checkpoint_callbacks = []
        callback_metrics = {}
        global_step = 2
        current_epoch = 0

    assert fit_summary(Trainer(), CLASSES) == [
        "fit: done, 0 epochs, 2 optimizer steps",
        "  no checkpoint saved (checkpointing disabled or fast_dev_run)",
    ]


def test_checkpoints_are_where_the_docs_say(slides, capsys):
    """With Lightning's default logger (configs/kidney.yaml sets none), fit writes its checkpoints under
    <default_root_dir>/lightning_logs/version_0/checkpoints/: the path docs/qupath.md and
    docs/terminal_and_report.md give for runs/kidney."""
    import yaml

    kidney = yaml.safe_load((ROOT / "configs" / "kidney.yaml").read_text())
    assert "logger" not in kidney["trainer"] and kidney["trainer"]["default_root_dir"] == "runs/kidney"
    code = run("fit", "--config", TINY, "--data.init_args.slides", "slides.csv", "--trainer.default_root_dir", "run",
               "--trainer.enable_progress_bar", "false", "--trainer.logger", "true",
               "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint", "--trainer.callbacks.monitor",
               "val_dice", "--trainer.callbacks.mode", "max", "--trainer.callbacks.save_last", "true",
               "--trainer.callbacks.filename", "best-{epoch}-{val_dice:.3f}")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    assert (slides / "run/lightning_logs/version_0/checkpoints/last.ckpt").is_file()
    assert "  last checkpoint: run/lightning_logs/version_0/checkpoints/last.ckpt" in err.splitlines()
    documented = {
        doc: re.findall(r"runs/kidney/[^\s'`)]*\.ckpt", (ROOT / "docs" / doc).read_text())
        for doc in ("qupath.md", "terminal_and_report.md")
    }
    for doc, paths in documented.items():
        assert paths, doc
        for path in paths:
            real = path.startswith("runs/kidney/lightning_logs/version_0/checkpoints/")
            assert real or "**" in path, (doc, path)
    assert any(p.endswith("/checkpoints/last.ckpt") for p in documented["qupath.md"])
    pattern = r"best-epoch=\d+-val_dice=\d\.\d{3}\.ckpt"  # configs/kidney.yaml's filename
    assert re.findall(pattern, "\n".join(documented["terminal_and_report.md"]))
    assert re.fullmatch(pattern, next((slides / "run").rglob("best-*.ckpt")).name)


def test_work_lost_without_a_word_summary_of_a_fit_without_validation():
    """Issue 28, class 9: without validation the one checkpoint is last.ckpt (newest epoch), not a best."""

    class Callback:
        monitor = None
        best_model_path = "run/checkpoints/last.ckpt"
        last_model_path = ""

    class Trainer:
        checkpoint_callbacks = [Callback()]
        callback_metrics = {}
        global_step = 6
        current_epoch = 3

    assert fit_summary(Trainer(), CLASSES) == [
        "fit: done, 3 epochs, 6 optimizer steps",
        "  last checkpoint: run/checkpoints/last.ckpt",
        "next: histoseg quantify --ckpt_path run/checkpoints/last.ckpt --slides 'slides/*.svs' --out results",
    ]


def test_next_command_names_the_users_slides(tmp_path, monkeypatch):
    """The ``next:`` line points at the folder and extension of the slides the model was trained on (not a
    fixed 'slides/*.svs'); after synthetic slides, at new synthetic slides made with an unseen seed."""
    from types import SimpleNamespace

    from histoseg.console import slides_to_quantify

    monkeypatch.chdir(tmp_path)
    rows = [SimpleNamespace(slide=tmp_path / "scans" / f"{n}.ndpi", split="train") for n in "ab"]
    rows.append(SimpleNamespace(slide=tmp_path / "held" / "c.tif", split="val"))
    table = SimpleNamespace(synthetic=None, records=lambda: rows)
    assert slides_to_quantify(table) == ("'scans/*.ndpi'", None)
    rows[1].slide = tmp_path / "scans" / "b.svs"  # mixed extensions: the folder
    assert slides_to_quantify(table) == ("scans", None)
    synthetic = SimpleNamespace(synthetic=SimpleNamespace(seed=0))
    slides, first = slides_to_quantify(synthetic)
    assert slides == "demo_slides" and first.startswith("histoseg synthesize --out demo_slides --n 2 --seed 1000")
    assert "--seed 2000" in slides_to_quantify(SimpleNamespace(synthetic=SimpleNamespace(seed=1000)))[1]
    assert slides_to_quantify(None) == ("'slides/*.svs'", None)

    class Callback:
        monitor = None
        best_model_path = "run/checkpoints/last.ckpt"
        last_model_path = ""

    class Trainer:
        checkpoint_callbacks = [Callback()]
        callback_metrics = {}
        global_step = 6
        current_epoch = 3
        datamodule = table

    rows[1].slide = tmp_path / "scans" / "b.ndpi"
    assert fit_summary(Trainer(), CLASSES)[-1] == (
        "next: histoseg quantify --ckpt_path run/checkpoints/last.ckpt --slides 'scans/*.ndpi' --out results"
    )

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
