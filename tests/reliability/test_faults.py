"""Interruptions: a quantify run killed with SIGKILL and rerun gives byte-identical reports; a fit killed
mid-epoch resumes from its last checkpoint with --ckpt_path last and finishes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from histoseg.outputs import is_ours
from tests.conftest import ROOT, make_labelled_slide

TINY = str(ROOT / "tests" / "conf" / "tiny.yaml")


def histoseg(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "histoseg", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(predicate, process, timeout=300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def test_killed_quantify_rerun_gives_byte_identical_reports(tiny_slide_checkpoint, tmp_path):
    _, ckpt = tiny_slide_checkpoint  # tests/conf/tiny.yaml fitted on one labelled slide (conftest.py)
    slides = tmp_path / "slides"
    slides.mkdir()
    for i in range(3):
        make_labelled_slide(slides, f"s{i}", seed=10 + i, size=(640, 512))
        (slides / f"s{i}.png").unlink()
    common = ["quantify", "--ckpt_path", ckpt, "--slides", slides, "--tile_size", "128", "--no_progress"]
    reference = subprocess.run(
        [sys.executable, "-m", "histoseg", *map(str, common), "--out", str(tmp_path / "a")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert reference.returncode == 0, reference.stderr[-2000:]

    out = tmp_path / "b"
    process = histoseg(*common, "--out", out)
    assert wait_for(lambda: (out / ".s0.result.json").exists(), process), "first slide never finished"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "report.csv").exists()  # nothing that looks complete
    # A slide killed after its label map but before its result file (the completion marker) may
    # leave the label map; it must be marked as histoseg's, so the rerun may replace it.
    unfinished = [
        p
        for p in out.iterdir()
        if p.name.endswith(".labels.tif") and not (out / f".{p.name[:-11]}.result.json").exists()
    ]
    assert all(is_ours(p, out) for p in unfinished), unfinished
    rerun = subprocess.run(
        [sys.executable, "-m", "histoseg", *map(str, common), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for name in ("report.csv", "report.json"):
        assert (out / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    leftovers = [p.name for p in out.iterdir() if ".tmp-" in p.name or p.name.endswith(".raw")]
    assert leftovers == []


def tiny_fit_args(slides: Path, root: Path, batches: int, *extra: str) -> list:
    """``fit`` of tests/conf/tiny.yaml for 3 epochs of ``batches`` steps, with a ModelCheckpoint(``extra``)."""
    return [
        "fit",
        "--config",
        TINY,
        "--data.init_args.slides",
        slides,
        "--trainer.default_root_dir",
        root,
        "--trainer.max_epochs",
        "3",
        "--trainer.limit_train_batches",
        str(batches),
        "--data.init_args.patches.patches_per_epoch",
        str(2 * batches),
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        *extra,
        "--trainer.callbacks.save_last",
        "true",
    ]


def resume_last(args: list, timeout: int) -> subprocess.CompletedProcess:
    """Rerun a killed fit with ``--ckpt_path last``; it must restore the checkpoint and finish."""
    resumed = subprocess.run(
        [sys.executable, "-m", "histoseg", *map(str, args), "--ckpt_path", "last"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Restoring states from the checkpoint" in resumed.stderr or "Restored all states" in resumed.stderr
    return resumed


def test_killed_fit_resumes_from_last_checkpoint(tmp_path):
    make_labelled_slide(tmp_path, "a", seed=0)
    (tmp_path / "slides.csv").write_text("slide,labels,split\na.tif,a.png,train\na.tif,a.png,val\n")
    root = tmp_path / "run"
    args = tiny_fit_args(tmp_path / "slides.csv", root, 24)
    process = histoseg(*args)
    assert wait_for(lambda: any(root.rglob("last.ckpt")), process), "no checkpoint after the first epoch"
    time.sleep(1.0)  # well inside the second epoch
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    first = torch.load(next(root.rglob("last.ckpt")), weights_only=True)
    assert first["epoch"] < 2
    resume_last(args, timeout=600)
    final = torch.load(max(root.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime), weights_only=True)
    assert final["epoch"] == 2 and final["global_step"] == 3 * 24


def test_work_lost_without_a_word_fit_without_validation_keeps_last_every_epoch(tmp_path):
    """Issue 28, class 9: a fit without validation slides (every slide in train, as the flash and scribble
    recipes are run) with the configs' ModelCheckpoint(monitor=val_dice, save_last=true) writes last.ckpt
    after every epoch, so a fit killed in epoch 2 resumes with --ckpt_path last and finishes."""
    make_labelled_slide(tmp_path, "a", seed=0)
    (tmp_path / "slides.csv").write_text("slide,labels,split\na.tif,a.png,train\n")
    root = tmp_path / "run"
    args = tiny_fit_args(
        tmp_path / "slides.csv", root, 3, "--trainer.callbacks.monitor", "val_dice", "--trainer.callbacks.mode", "max"
    )
    process = histoseg(*args)
    found = wait_for(lambda: any(root.rglob("last.ckpt")), process, timeout=120)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert found, "no last.ckpt before the fit ended (or was killed)"
    first = torch.load(next(root.rglob("last.ckpt")), weights_only=True)
    assert first["epoch"] < 2  # written at the end of an early epoch, not when the fit ended
    assert [p.name for p in root.rglob("*.ckpt")] == ["last.ckpt"]  # one file, no second copy
    resume_last(args, timeout=300)
    final = torch.load(next(root.rglob("last.ckpt")), weights_only=True)
    assert final["epoch"] == 2 and final["global_step"] == 3 * 3
