"""The README and docs/ say what the code does: CI runs the README's test command, the option tables
name real options, the README stays a short guide, and every relative link points to a file that
exists. Every documented command runs: tests/test_docs_commands.py."""

import re
import shlex
import subprocess
import sys

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
PREDICTION = (ROOT / "docs" / "prediction.md").read_text()
README_MAX_LINES = 160

# Docs written on other branches of this release; the lead removes each entry when its file is merged
# (test_pending_docs_are_not_yet_written fails as soon as one exists, as a reminder).
PENDING_DOCS: set[str] = set()
# quantify options added on other branches of this release (issues 14 and 16), documented already;
# the lead removes each entry when its option is merged (test_pending_options_are_not_yet_merged).
PENDING_OPTIONS: set[str] = set()


def bash_commands(text: str = README) -> list[str]:
    """Commands of a Markdown text's ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("   #")[0].strip()
            if line:
                commands.append(" ".join(line.split()))
    return commands


def histoseg_commands(subcommand: str, text: str = README) -> list[list[str]]:
    prefix = ["python", "-m", "histoseg", subcommand]
    return [shlex.split(c)[4:] for c in bash_commands(text) if shlex.split(c)[:4] == prefix]


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


def test_config_reference_options_exist():
    """Every ``data.*`` / ``model.*`` option in the option tables of the README and docs/labels.md is an
    argument of the class."""
    import inspect

    from histoseg.datamodules import SlideDataModule
    from histoseg.tasks import SegmentationTask
    from histoseg.training_options import OPTION_GROUPS

    labels_doc = (ROOT / "docs" / "labels.md").read_text()
    named = []
    for text, least in ((README, 10), (labels_doc, 5)):
        table = " ".join(row[0] for row in table_rows(text, "option"))
        found = re.findall(r"`(data|model)\.([\w.]+)`", table)
        assert len(found) >= least
        named += found
    arguments = {
        "data": set(inspect.signature(SlideDataModule.__init__).parameters)
        | {f"{group}.{field}" for group, kind in OPTION_GROUPS.items() for field in kind.__dataclass_fields__},
        "model": set(inspect.signature(SegmentationTask.__init__).parameters),
    }
    missing = [f"{group}.{name}" for group, name in named if name not in arguments[group]]
    assert not missing, f"README option table names unknown options: {missing}"


def table_rows(text: str, header: str) -> list[list[str]]:
    """Cells of the Markdown table whose header row starts with ``| <header> |``."""
    lines = text.split(f"| {header} |", 1)[1].split("\n")[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def quantify_help_options() -> set[str]:
    result = run(["quantify", "--help"], timeout=120)
    assert result.returncode == 0, result.stderr[-1500:]
    return set(re.findall(r"(?<![\w-])(--\w+)", result.stdout)) - {"--help"}


def test_quantify_option_table_matches_the_parser():
    """docs/prediction.md's option table and ``histoseg quantify --help`` name the same options."""
    documented = [
        o for row in table_rows(PREDICTION, "quantify option") for o in re.findall(r"`(--\w+)`", row[0])
    ]
    assert len(documented) == len(set(documented)), f"an option is documented twice: {documented}"
    assert len(documented) >= 14
    parser = quantify_help_options()
    undocumented = sorted(parser - set(documented))
    unknown = sorted(set(documented) - parser - PENDING_OPTIONS)
    assert not undocumented, f"quantify options missing from docs/prediction.md's table: {undocumented}"
    assert not unknown, f"docs/prediction.md documents options quantify does not have: {unknown}"


def test_pending_options_are_not_yet_merged():
    merged = sorted(PENDING_OPTIONS & quantify_help_options())
    assert not merged, f"{merged} now exist: remove them from PENDING_OPTIONS in tests/test_readme.py"


def test_every_report_column_is_documented():
    """Each column of report.csv has a line in docs/prediction.md's column table."""
    from histoseg.report.tables import REPORT_COLUMNS

    documented = {c for row in table_rows(PREDICTION, "column") for c in re.findall(r"`(\w+)`", row[0])}
    missing = [c for c in REPORT_COLUMNS if c not in documented]
    assert not missing, f"report columns not described in docs/prediction.md: {missing}"


def test_readme_is_a_short_guide():
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; keep it under {README_MAX_LINES}, move detail to docs/"
    )
    for heading in ("## Glossary", "## Your own slides", "## The three ways to label", "## How to cite"):
        assert heading in README, heading


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces -> hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def markdown_files() -> list:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_github_anchor_known_answers():
    assert (
        github_anchor("How far to trust the interstitial fraction")
        == "how-far-to-trust-the-interstitial-fraction"
    )
    assert (
        github_anchor("Prediction: `quantify` and what its outputs mean")
        == "prediction-quantify-and-what-its-outputs-mean"
    )
    assert github_anchor("3. Patch classifier → FCN") == "3-patch-classifier--fcn"


def test_relative_links_point_to_existing_files_and_headings():
    broken = []
    for md in markdown_files():
        text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked (tests never touch the network)
            path, _, anchor = target.partition("#")
            file = (md.parent / path).resolve() if path else md
            name = file.relative_to(ROOT).as_posix() if file.is_relative_to(ROOT) else str(file)
            if name in PENDING_DOCS:
                continue
            if not file.exists():
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such file)")
                continue
            if anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(), re.M)
                if anchor not in {github_anchor(h) for h in headings}:
                    broken.append(f"{md.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_pending_docs_are_not_yet_written():
    written = sorted(name for name in PENDING_DOCS if (ROOT / name).exists())
    assert not written, f"{written} now exist: remove them from PENDING_DOCS in tests/test_readme.py"


def test_slow_tests_are_promised_only_if_they_exist():
    """The docs may tell users to run ``pytest -m slow`` only when some test carries the marker."""
    promised = [md.name for md in markdown_files() if "-m slow" in md.read_text()]
    marked = [p.name for p in (ROOT / "tests").rglob("test_*.py") if "mark.slow" in p.read_text()]
    assert marked or not promised, f"{promised} promise 'pytest -m slow' but no test is marked slow"


def test_design_layer_list_is_the_import_contract():
    """docs/DESIGN.md's numbered layer list is pyproject's import-linter layers contract, in order."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    expected = [
        sorted(m.strip().removeprefix("histoseg.") for m in layer.split("|")) for layer in contract["layers"]
    ]
    design = (ROOT / "docs" / "DESIGN.md").read_text().split("## Layers", 1)[1].split("\n## ", 1)[0]
    documented = [
        sorted(re.findall(r"`(\w+)`", line.split(":")[0]))
        for line in re.findall(r"^\d+\. (.+)$", design, re.M)
    ]
    assert documented == expected, f"docs/DESIGN.md layers {documented} != pyproject contract {expected}"


def test_brush_width_in_the_docs_is_the_code_default():
    """docs/qupath.md and docs/labels.md give data.labels.brush_um's default as the code has it."""

    from histoseg.training_options import LabelOptions

    default = LabelOptions().brush_um
    number = r"(\d+(?:\.\d+)?)"
    qupath = re.findall(rf"`data\.labels\.brush_um`, default {number} µm", (ROOT / "docs" / "qupath.md").read_text())
    labels = re.findall(
        rf"`data\.labels\.brush_um` microns\s+\(default {number}", (ROOT / "docs" / "labels.md").read_text()
    )
    assert qupath and labels and {float(v) for v in qupath + labels} == {default} == {2.0}
