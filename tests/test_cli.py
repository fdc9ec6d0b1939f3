"""The command line: help, version, every config parses, end-to-end fits, one-line user errors."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from histoseg.cli import check_moved_options
from histoseg.errors import ConfigError
from tests.conftest import FLASH, ROOT, cli_exit_code
from tests.test_configs import TINY_UNET  # tiny network overrides: end-to-end runs take seconds

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def run(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "histoseg", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def assert_user_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


def in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """``python -m histoseg ARGS`` run through :func:`histoseg.cli.main` in this interpreter (no
    torch import per call), with the same exit status and captured output as :func:`run`."""
    code = cli_exit_code(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["histoseg", *args], code, out, err)


def test_help_and_version(capsys):
    # The entry point itself (python -m histoseg) in a fresh interpreter: version and a bad command.
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("histoseg ")
    assert_user_error(run("bogus"), "unknown command")
    assert in_process(capsys, "--help").returncode == 0
    fit_help = in_process(capsys, "fit", "--help")
    assert fit_help.returncode == 0 and "--config" in fit_help.stdout


def test_program_names_and_defaults_in_help(capsys):
    """Every --help names the program as typed (not ``__main__.py``); quantify's shows its defaults."""
    for command in ("quantify", "sample", "synthesize", "corrections"):
        result = in_process(capsys, command, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: histoseg {command} "), result.stdout[:200]
    fit = run("fit", "--help")  # a fresh interpreter: argv[0] is __main__.py there
    assert fit.returncode == 0 and fit.stdout.startswith("usage: histoseg [options] fit "), fit.stdout[:200]
    module = subprocess.run([sys.executable, "-m", "histoseg.synthetic", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert module.stdout.startswith("usage: python -m histoseg.synthetic "), module.stdout[:200]
    quantify = " ".join(in_process(capsys, "quantify", "--help").stdout.split())
    for shown in ("(default: 0.5)", "(default: auto)", "(default: 4)", "(default: cpu)", "(default: atrous)",
                  "(default: read from each slide)", "(default: the model's)"):  # fmt: skip
        assert shown in quantify, shown
    assert "(default: None)" not in quantify and "(default: False)" not in quantify


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_parses(config, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = in_process(capsys, "fit", "--config", str(config), "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_path" in result.stdout


def test_console_script_matches_module():
    import shutil

    exe = shutil.which("histoseg", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("console script not installed in this environment")
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.startswith("histoseg ")


def test_flash_fit_writes_checkpoint_and_loss_falls(tmp_path):
    if not FLASH.exists():
        pytest.skip("../shared/data/flash-mouse-pas absent")
    result = run(
        "fit",
        "--config",
        "configs/flash.yaml",
        *TINY_UNET,
        "--trainer.max_epochs",
        "4",
        "--trainer.limit_val_batches",
        "1",
        "--data.init_args.patches.patches_per_epoch",
        "32",
        "--data.init_args.patches.batch_size",
        "8",
        "--data.init_args.patches.patch_size",
        "128",  # the config's 192 costs 2.25x per step; the test is about the loop, not the recipe
        "--model.init_args.lr",
        "0.01",
        "--model.init_args.scheduler",
        "none",
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(tmp_path),
        "--trainer.default_root_dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.rglob("*.ckpt"))
    import csv

    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    losses = [float(r["train_loss"]) for r in rows if r.get("train_loss")]
    assert len(losses) >= 4 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2


BAD_CASES = {
    "missing config": (["--config", "configs/does-not-exist.yaml"], ["does-not-exist.yaml"]),
    "unknown key": (["--config", "configs/flash.yaml", "--data.init_args.bogus", "1"], ["bogus"]),
    "patch size": (
        ["--config", "configs/flash.yaml", "--data.init_args.patches.patch_size", "100"],
        ["data.patches.patch_size=100", "multiple of 32"],
    ),
    "missing slide table": (
        ["--config", "configs/flash.yaml", "--data.init_args.slides", "nope.csv"],
        ["nope.csv", "not found"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
def test_bad_config_is_one_line_error(case, tmp_path, capsys, monkeypatch):
    args, needles = BAD_CASES[case]
    if "flash" in " ".join(args) and not FLASH.exists():
        pytest.skip("../shared/data/flash-mouse-pas absent")
    monkeypatch.chdir(ROOT)
    assert_user_error(in_process(capsys, "fit", *args, "--trainer.default_root_dir", str(tmp_path)), *needles)


def _option_help(text: str) -> dict[str, str]:
    """``{option: its help sentence}`` from argparse help output (the text before ``(type: ...)``)."""
    import re

    options: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^  (--\S+)(.*)$", line)
        if match:
            spec_and_help = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            current = match.group(1)
            options[current] = spec_and_help[1] if len(spec_and_help) > 1 else ""
        elif current and line.startswith(" " * 4) and line.strip():
            options[current] += " " + line.strip()
        else:
            current = None
    return {k: v.split("(type:")[0].strip() for k, v in options.items()}


def test_synthetic_datamodule_help_explains_every_option(capsys):
    """``fit --data.help SyntheticKidneyDataModule`` gives every option its own help sentence: the
    SlideDataModule options (declared once, composed in) and the generated slides' (data.synthetic.*)."""
    import inspect

    from histoseg.cli import main
    from histoseg.datamodules import SlideDataModule
    from histoseg.sources import SyntheticSlides
    from histoseg.training_options import OPTION_GROUPS

    with pytest.raises(SystemExit) as info:
        main(["fit", "--data.help", "histoseg.datamodules.SyntheticKidneyDataModule"])
    assert info.value.code in (0, None)
    helps = _option_help(capsys.readouterr().out)
    expected = {f"--data.{name}" for name in inspect.signature(SlideDataModule.__init__).parameters} - {
        "--data.self",
        "--data.synthetic",
        *(f"--data.{group}" for group in OPTION_GROUPS),
    }
    expected |= {f"--data.synthetic.{field}" for field in SyntheticSlides.__dataclass_fields__}
    expected |= {
        f"--data.{group}.{field}" for group, kind in OPTION_GROUPS.items() for field in kind.__dataclass_fields__
    }
    assert expected <= set(helps), sorted(expected - set(helps))
    bad = {k: v for k, v in helps.items() if k in expected and (len(v) < 8 or v.lower().startswith("see "))}
    assert not bad, bad
    assert helps["--data.synthetic.n_slides"].startswith("Number of slides")
    assert helps["--data.weighting.border_w0"].startswith("Amplitude")


def test_help_parser_finds_empty_and_see_also_helps():
    """The parser of the test above is not vacuous: it reports an option without help, and a 'See ...'."""
    text = (
        "group:\n  --data.a A             Real help. (type: int, default: 1)\n"
        "  --data.b B             (type: int, default: 2)\n"
        "  --data.c C\n                        See SlideDataModule. (type: int)\n"
    )
    assert _option_help(text) == {
        "--data.a": "Real help.",
        "--data.b": "",
        "--data.c": "See SlideDataModule.",
    }


class _RunsCode:
    """Unpickling this creates ``marker`` (what a malicious checkpoint would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_validate_refuses_a_checkpoint_that_would_run_code(tmp_path, capsys):
    """--ckpt_path is read once with weights_only before Lightning loads it: one error line, exit 2,
    and the pickled payload never runs."""
    import torch

    from histoseg.cli import main

    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "histoseg": {"payload": _RunsCode(marker)}}, tmp_path / "evil.ckpt")
    args = [
        "validate",
        "--config",
        str(ROOT / "tests/conf/tiny.yaml"),
        "--ckpt_path",
        str(tmp_path / "evil.ckpt"),
    ]
    with pytest.raises(SystemExit) as info:
        main([*args, "--trainer.default_root_dir", str(tmp_path / "run")])
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
    assert info.value.code == 2 and len(errors) == 1, errors
    assert "evil.ckpt: not a readable histoseg checkpoint" in errors[0] and "run code" in errors[0]
    assert not marker.exists() and not (tmp_path / "run").exists()


TWO_CONFIG_CASES = {
    "unknown option": (
        "trainer:\n  bogus_option: 3\n",
        ["second.yaml: invalid configuration", "bogus_option"],
    ),
    "bad value": ("model:\n  init_args:\n    lr: abc\n", ["second.yaml: invalid configuration", "abc"]),
    "not YAML": ("trainer:\n  max_epochs: [1\n", ["second.yaml: not valid YAML at line 3"]),
}


@pytest.mark.parametrize("case", list(TWO_CONFIG_CASES), ids=list(TWO_CONFIG_CASES))
def test_messages_that_mislead_second_config_at_fault_is_named(case, tmp_path, capsys):
    """Issue 28, class 8: a second --config at fault is reported under its own name, not the first's."""
    text, needles = TWO_CONFIG_CASES[case]
    (tmp_path / "second.yaml").write_text(text)
    tiny = str(ROOT / "tests" / "conf" / "tiny.yaml")
    second = tmp_path / "second.yaml"
    for args in (["--config", tiny, "--config", str(second)], ["--config", tiny, f"--config={second}"]):
        result = in_process(capsys, "fit", *args, "--trainer.default_root_dir", str(tmp_path / "run"))
        assert_user_error(result, *needles)
        assert "tiny.yaml" not in result.stderr
    result = in_process(capsys, "fit", "--config", tiny, "--config", str(tmp_path / "missing.yaml"))
    assert_user_error(result, "missing.yaml: cannot read the configuration", "--config path")
    # an option typed on the command line is not blamed on a file
    result = in_process(capsys, "fit", "--config", tiny, "--trainer.bogus", "2")
    assert_user_error(result, "error: invalid configuration: unrecognized arguments: --trainer.bogus")


def test_switching_the_data_class_leaves_the_synthetic_slides_behind(tmp_path, capsys, monkeypatch):
    """docs/qupath.md's fine-tune: kidney_scribbles.yaml's synthetic data block, switched to the user's
    slide table by --data SlideDataModule. jsonargparse carried the ``synthetic`` block over (the new
    class accepts it) and refused it ("Does not validate against any of the Union sub..."); now the
    resolved config has the table and no synthetic slides, and every other data option is kept."""
    import yaml

    monkeypatch.chdir(tmp_path)
    (tmp_path / "slides.csv").write_text("slide,labels,kind,split,mpp\n")
    args = ["fit", "--config", str(ROOT / "configs" / "kidney_scribbles.yaml")]
    args += ["--data", "histoseg.datamodules.SlideDataModule", "--data.slides", "slides.csv", "--print_config"]
    result = in_process(capsys, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    data = yaml.safe_load(result.stdout)["data"]
    assert data["class_path"] == "histoseg.datamodules.SlideDataModule"
    assert data["init_args"]["synthetic"] is None and data["init_args"]["slides"] == "slides.csv"
    patches = data["init_args"]["patches"]
    assert patches["class_balanced"] is True and patches["patch_size"] == 256


def test_a_long_configuration_error_is_cut_between_words():
    from histoseg.cli import _config_message

    words = " ".join(f"word{k:03d}" for k in range(100))
    message = _config_message(ValueError(f"Parser key \"data\": {words}"), ["fit"])
    text = message.split("invalid configuration: ", 1)[1].split("; check the option", 1)[0]
    assert len(text) <= 310 and text.endswith(" ...")
    assert re.fullmatch(r"word\d{3}", text[: -len(" ...")].split()[-1]), text[-30:]


# ---- the flat data options of before fail with one line naming their new place ----------------------
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


def test_a_flat_option_fails_before_lightning_is_imported(capsys):
    """Through the command line: one error line, exit 2, and no Lightning import for a config to refuse."""
    code = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom histoseg.cli import main\ntry:\n    main(['fit', '--data.brush_um', '3'])\n"
         "except SystemExit as e:\n    print(e.code, 'lightning' in ' '.join(sys.modules))"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert code.stdout.split() == ["2", "False"], code.stdout + code.stderr
    assert code.stderr.strip().splitlines() == [
        "error: --data.brush_um: moved to --data.labels.brush_um (training options are grouped: labels, patches, "
        "weighting, augmentation, loader); use --data.labels.brush_um"
    ]


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
    for config in sorted((ROOT / "configs").glob("*.yaml")):
        check_moved_options(["fit", "--config", str(config)])
