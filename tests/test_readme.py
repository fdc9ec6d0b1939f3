"""The README's commands work as written: CI runs its test command, and every ``python -m histoseg``
line in it runs (user paths such as ``my_slides/*.svs`` swapped for tiny synthetic slides, and the
tiny-network overrides appended where a command trains or loads a network)."""

import csv
import re
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT
from test_configs import SMALL_SYNTHETIC, TINY_UNET, fit_tiny_kidney

README = (ROOT / "README.md").read_text()


def bash_commands() -> list[str]:
    """Commands of the README's ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("   #")[0].strip()
            if line:
                commands.append(" ".join(line.split()))
    return commands


def histoseg_commands(subcommand: str) -> list[list[str]]:
    prefix = ["python", "-m", "histoseg", subcommand]
    return [shlex.split(c)[4:] for c in bash_commands() if shlex.split(c)[:4] == prefix]


def run(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "histoseg", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_ci_runs_the_readme_test_command():
    test_command = next(c for c in bash_commands() if c.endswith("python -m pytest"))
    ci = (ROOT / ".ci" / "run").read_text().replace(" --quiet", "")  # quieter logs, same install
    for step in test_command.split(" && "):
        assert step in ci or f"python -m {step}" in ci, f"README step {step!r} is not what .ci/run runs"
    assert re.search(r"^python -m pytest$", ci, re.M)


def test_quick_start_trains_the_kidney_config():
    """The quick start's fit command is the one the config tests run (tests/test_configs.py)."""
    assert any(c.endswith("python -m histoseg fit --config configs/kidney.yaml") for c in bash_commands())


def test_help_and_print_config_commands_run():
    fits = histoseg_commands("fit")
    informational = [a for a in fits if any(x == "--print_config" or x.endswith("help") for x in a)]
    assert len(informational) >= 4
    for args in informational:
        result = run(["fit", *args])
        assert result.returncode == 0, f"fit {' '.join(args)}: {result.stderr[-1500:]}"
        assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    assert fit_tiny_kidney(root, "--trainer.logger", "false") == 0
    slides = tmp_path_factory.mktemp("slides")
    from histoseg.synthetic.generator import generate_dataset

    generate_dataset(slides, n_slides=1, seed=3, width=512, height=384)
    return next(root.rglob("last.ckpt")), next(slides.glob("synthetic_*.tif"))


def substitute(args: list[str], ckpt, slide, out) -> list[str]:
    swap = {"runs/kidney/**/last.ckpt": str(ckpt), "my_slides/*.svs": str(slide), "results/": str(out)}
    return [swap.get(a, a) for a in args]


def test_quantify_command_runs(trained, tmp_path):
    ckpt, slide = trained
    (args,) = histoseg_commands("quantify")
    result = run(["quantify", *substitute(args, ckpt, slide, tmp_path / "out"), "--tile_size", "128"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "report.csv").exists()


def test_multi_process_predict_command_runs(trained, tmp_path):
    """The README's DDP predict command (2 processes on CPU here) writes one merged report."""
    ckpt, slide = trained
    (args,) = histoseg_commands("predict")
    args = substitute(args, ckpt, slide, tmp_path / "out")
    overrides = [
        *SMALL_SYNTHETIC,
        *TINY_UNET,
        "--trainer.callbacks.options.tile_size",
        "128",
        "--trainer.logger",
        "false",
    ]
    result = run(["predict", *args, *overrides, "--trainer.accelerator", "cpu"])
    assert result.returncode == 0, result.stderr[-2000:]
    # one slide, two processes: the second has no slide of its own and must not crash or hang
    with open(tmp_path / "out" / "report.csv") as handle:
        slides = {row["slide"] for row in csv.DictReader(handle)}
    assert slides == {slide.stem} or slides == {slide.name}, slides


def test_config_reference_options_exist():
    """Every ``data.*`` / ``model.*`` option in the README's option table is an argument of the class."""
    import inspect

    from histoseg.datamodules import SlideDataModule
    from histoseg.tasks import SegmentationTask

    table = README.split("| option | meaning |", 1)[1].split("\n\n", 1)[0]
    named = re.findall(r"`(data|model)\.(\w+)`", table)
    assert len(named) >= 10
    arguments = {
        "data": set(inspect.signature(SlideDataModule.__init__).parameters),
        "model": set(inspect.signature(SegmentationTask.__init__).parameters),
    }
    missing = [f"{group}.{name}" for group, name in named if name not in arguments[group]]
    assert not missing, f"README option table names unknown options: {missing}"
