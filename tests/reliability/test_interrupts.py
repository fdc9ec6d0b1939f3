"""``python -m histoseg`` over the whole process lifetime: a Ctrl-C (SIGINT) at any moment, from the first
import until the command's work is done, ends with exit status 130, one line on stderr and no partial
file; one that arrives while the finished process exits is ignored (exit 0, complete outputs).

The number of random moments tried is small in CI (6); set ``HISTOSEG_SIGINT_TRIES=50`` for more.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from histoseg.outputs import COHORT_FILES, OUTPUT_SUFFIXES
from tests.conftest import ROOT, make_labelled_slide
from tests.reliability.helpers import tiny_checkpoint

TRIES = int(os.environ.get("HISTOSEG_SIGINT_TRIES", "6"))


def partial_files(out: Path) -> list[str]:
    """What in ``out`` is partial: temporaries, per-slide outputs without a finished ``ok`` result file
    (or a result file whose outputs are not all there), a cohort report that is not complete."""
    if not out.exists():
        return []
    names = {p.name for p in out.iterdir()}
    problems = [n for n in names if ".tmp-" in n or n.endswith(".raw")]
    for name in names:
        if name.startswith(".") and name.endswith(".result.json"):
            stem = name[1 : -len(".result.json")]
            status = json.loads((out / name).read_text())["status"]
            outputs = [f"{stem}{s}" for s in OUTPUT_SUFFIXES]
            if status == "running" or (status == "ok" and not all(o in names for o in outputs)):
                problems.append(f"{name} ({status})")
        for suffix in OUTPUT_SUFFIXES:
            if name.endswith(suffix) and f".{name[: -len(suffix)]}.result.json" not in names:
                problems.append(f"{name} (no result file)")
    cohort = [n for n in COHORT_FILES if n in names]
    if cohort and len(cohort) != len(COHORT_FILES):
        problems.append(f"incomplete cohort report {cohort}")
    return problems


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sigint")
    slides = root / "slides"
    slides.mkdir()
    for i in range(3):
        make_labelled_slide(slides, f"s{i}", seed=10 + i, size=(640, 512))
        (slides / f"s{i}.png").unlink()
    return slides, tiny_checkpoint(root / "tiny.ckpt", mpp=2.0)


def quantify(ckpt: Path, slides: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "histoseg", "quantify", "--ckpt_path", str(ckpt), "--slides", str(slides),
         "--out", str(out), "--tile_size", "128", "--no_progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_ctrl_c_outside_the_guarded_region_ends_with_130_one_line_no_partial_file(small_cohort, tmp_path):
    """Class 5: SIGINT at random moments of a small cohort run (imports, slides, report, shutdown)."""
    slides, ckpt = small_cohort
    started = time.monotonic()
    reference = quantify(ckpt, slides, tmp_path / "reference")
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-2000:]
    duration = time.monotonic() - started
    rng = random.Random(int(os.environ.get("HISTOSEG_SIGINT_SEED", "0")))
    delivered = 0
    for attempt in range(3 * TRIES):
        if delivered == TRIES:
            break
        out = tmp_path / f"run{attempt}"
        # Half of the moments in the first second (imports), the others anywhere in the run.
        delay = rng.uniform(0.0, 1.0) if attempt % 2 == 0 else rng.uniform(0.0, duration)
        process = quantify(ckpt, slides, out)
        time.sleep(delay)
        if process.poll() is not None:  # already finished: not a try
            process.communicate()
            continue
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=600)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        context = f"SIGINT after {delay:.2f} s (run takes {duration:.1f} s): exit {process.returncode}\n{err[-3000:]}"
        if process.returncode == 0:  # the work was done, the process was exiting: SIGINT is ignored
            assert lines == [] and partial_files(out) == [], context
            assert (out / "report.csv").read_bytes() == (tmp_path / "reference" / "report.csv").read_bytes()
            continue  # not a try
        delivered += 1
        assert process.returncode == 130, context
        assert len(lines) == 1 and lines[0].startswith("error: ") and "interrupted" in lines[0], context
        assert partial_files(out) == [], context
    assert delivered == TRIES
