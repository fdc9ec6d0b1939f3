"""Every shell command of the docs runs: the ```bash blocks of README.md, docs/*.md and the notebooks'
Markdown cells, in order, one sandbox folder per document, on tiny inputs.

How a documented command is run (the docs are never edited for the test; docs/index.md says the same
for writers of docs):

- **Where**: in a fresh folder per document holding what a user would have at that point:
  ``configs/`` (the repository's), one tiny synthetic slide (512 x 384 px) in ``slides/`` and in
  ``my_slides/``, and one tiny fitted checkpoint (a session fixture, fitted once) at
  ``runs/kidney/lightning_logs/version_0/checkpoints/last.ckpt`` and ``model.ckpt``.
- **Substitutions**: ``histoseg ...`` is ``python -m histoseg ...``; the placeholder ``CKPT`` is the
  tiny checkpoint; ``<stem>`` is the tiny slide's name; a slide glob or file ending ``.svs`` ends
  ``.tif`` (the tiny slides are pyramidal TIFFs).
- **Shrinking** (appended, so the command's own options are all parsed): ``fit`` gets one epoch of
  one batch, the tiny U-Net of the checkpoint and, on the synthetic data module, two small slides;
  ``quantify``/``sample`` get ``--tile_size 128``; ``predict`` both (and ``--trainer.accelerator cpu``).
- **Steps a person does by hand** between commands (QuPath corrections, a slide table) are made by
  the test before the command that needs them (``HAND_STEPS``).
- **Setup steps** of an install line (``python3 -m venv``, ``. .venv/bin/activate``, ``pip install``)
  are what this environment already is: counted, not run.
- **Marked blocks**: a block whose preceding line holds ``<!-- docs-test: skip: REASON -->`` (needs real data, a GPU,
  hours) is not run, or by ``<!-- docs-test: tested by tests/FILE.py::TEST -->`` is run as written by
  that test (which must exist). Any other command that is not ``histoseg`` fails the test: mark it.

``python -m histoseg`` commands run through :func:`histoseg.cli.main` in this interpreter (no torch
import per command); a command with ``--trainer.strategy ddp`` runs in a subprocess (it starts others).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_exit_code
from tests.test_configs import TINY_UNET

MARKER = re.compile(r"<!--\s*docs-test:\s*(skip|tested by)\s*:?\s*(.+?)\s*-->")
SHELL = ("bash", "sh", "shell", "console")
SETUP = ("python3 -m venv", ". .venv/bin/activate", "source .venv/bin/activate", "pip install")
CKPT_IN_SANDBOX = "runs/kidney/lightning_logs/version_0/checkpoints/last.ckpt"
SLIDE_STEM = "case12"

FIT_SHRINK = [
    *TINY_UNET,
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
    "--trainer.enable_model_summary", "false",
    "--data.init_args.patches.patch_size", "64", "--data.init_args.patches.batch_size", "2",
    "--data.init_args.patches.patches_per_epoch", "2", "--data.init_args.patches.val_patches", "2",
    "--data.init_args.loader.num_workers", "0",
]  # fmt: skip
SYNTHETIC_SHRINK = [
    "--data.init_args.synthetic.n_slides", "2", "--data.init_args.synthetic.width", "1024",
    "--data.init_args.synthetic.height", "768",
]  # fmt: skip
TILE_SHRINK = ["--tile_size", "128"]


@dataclass
class Block:
    doc: str  # path relative to the repository
    line: int  # of the opening fence
    text: str
    mark: tuple[str, str] | None  # ("skip", reason) or ("tested by", "tests/x.py::test_y")


def markdown_sources() -> list[tuple[str, str]]:
    """``(name, Markdown text)`` of README.md, docs/*.md and every notebook's Markdown cells."""
    sources = [("README.md", (ROOT / "README.md").read_text(encoding="utf-8"))]
    sources += [
        (f"docs/{p.name}", p.read_text(encoding="utf-8")) for p in sorted((ROOT / "docs").glob("*.md"))
    ]
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        text = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        sources.append((f"notebooks/{notebook.name}", text))
    return sources


def fenced_blocks(text: str) -> list[tuple[int, str, str, str]]:
    """``(line of the opening fence, language, body without the fence's indent, text before it)`` of every
    fenced block, fences matched in order (a closing fence is never taken for an opening one)."""
    blocks, lines, index = [], text.split("\n"), 0
    while index < len(lines):
        opening = re.match(r"( *)```(\w*)", lines[index])
        if not opening:
            index += 1
            continue
        indent, end = opening.group(1), index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        body = "\n".join(line[len(indent) :] for line in lines[index + 1 : end])
        blocks.append((index + 1, opening.group(2), body, "\n".join(lines[:index])))
        index = end + 1
    return blocks


def shell_blocks(name: str, text: str) -> list[Block]:
    """The shell blocks of a Markdown text (indented ones in list items too), with their marks."""
    blocks = []
    for line, language, body, before in fenced_blocks(text):
        if language not in SHELL:
            continue
        previous = before.rstrip().splitlines()
        mark = MARKER.search(previous[-1]) if previous else None
        blocks.append(Block(name, line, body, (mark.group(1), mark.group(2)) if mark else None))
    return blocks


def untagged_commands(text: str) -> list[str]:
    """First lines of fenced blocks without a language that look like commands (they would escape the test)."""
    found = []
    for _, language, body, _ in fenced_blocks(text):
        first = body.strip().splitlines()[0].strip() if body.strip() else ""
        if not language and re.match(r"(python3? |histoseg |PYTHONPATH=|pip |\$ )", first):
            found.append(first)
    return found


def commands(block: str) -> list[str]:
    """The commands of a block: continuation lines joined, comment lines and trailing comments dropped,
    ``a && b`` split into steps."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.split(r"\s#\s", " " + line)[0].strip()
        if line and not line.startswith("#"):
            out += [" ".join(step.split()) for step in line.split("&&")]
    return out


def all_blocks() -> list[Block]:
    return [b for name, text in markdown_sources() for b in shell_blocks(name, text)]


def test_block_parser_known_answers():
    text = (
        "intro\n\n<!-- docs-test: skip: needs a GPU -->\n```bash\nhistoseg quantify --a 1 \\\n   --b 'x y'   # note\n"
        "# a comment\npip install x && python -m histoseg fit --help\n```\n\n- item:\n\n  ```bash\n  histoseg doctor\n  ```\n"
        "```text\nhistoseg not a command\n```\n```\npython -m histoseg untagged\n```\n"
    )
    first, second = shell_blocks("x.md", text)
    assert first.mark == ("skip", "needs a GPU") and first.line == 4 and second.mark is None
    assert commands(first.text) == [
        "histoseg quantify --a 1 --b 'x y'",
        "pip install x",
        "python -m histoseg fit --help",
    ]
    assert commands(second.text) == ["histoseg doctor"]
    assert untagged_commands(text) == ["python -m histoseg untagged"]


# ---------------------------------------------------------------------------------------------- sandbox


@pytest.fixture(scope="session")
def docs_inputs(tmp_path_factory, tiny_kidney_root) -> tuple[Path, Path]:
    """``(the tiny checkpoint, one tiny synthetic slide)``, shared by every document's sandbox."""
    from histoseg.synthetic import generate_dataset

    folder = tmp_path_factory.mktemp("docs_slide")
    generate_dataset(folder, n_slides=1, seed=3, width=512, height=384)
    slide = folder / f"{SLIDE_STEM}.tif"
    next(folder.glob("synthetic_*[0-9].tif")).rename(slide)
    return next(tiny_kidney_root.rglob("last.ckpt")), slide


def make_sandbox(root: Path, ckpt: Path, slide: Path) -> Path:
    (root / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    for folder in ("slides", "my_slides"):
        (root / folder).mkdir()
        shutil.copy(slide, root / folder / slide.name)
    (root / CKPT_IN_SANDBOX).parent.mkdir(parents=True)
    shutil.copy(ckpt, root / CKPT_IN_SANDBOX)
    shutil.copy(ckpt, root / "model.ckpt")
    return root


def qupath_corrections(sandbox: Path) -> None:
    """What a person exports from QuPath after correcting: the predicted GeoJSON with one region's class
    changed (a reclassified region is a correction) and one stroke added."""
    data = json.loads((sandbox / "results" / f"{SLIDE_STEM}.geojson").read_text(encoding="utf-8"))
    feature = data["features"][0]
    name = feature["properties"]["classification"]["name"]
    feature["properties"]["classification"]["name"] = "tubules" if name != "tubules" else "interstitium"
    stroke = {"type": "LineString", "coordinates": [[40.0, 40.0], [200.0, 60.0]]}
    data["features"].append(
        {"type": "Feature", "geometry": stroke,
         "properties": {"objectType": "annotation", "classification": {"name": "interstitium", "color": [0, 0, 0]}}}
    )  # fmt: skip
    (sandbox / "corrected").mkdir(exist_ok=True)
    (sandbox / "corrected" / f"{SLIDE_STEM}.geojson").write_text(json.dumps(data), encoding="utf-8")


def qupath_slide_table(sandbox: Path) -> None:
    """The slide table docs/qupath.md asks for: the corrected slide as scribbles, and a dense validation slide."""
    from histoseg.synthetic import generate_dataset

    generate_dataset(sandbox / "masks", n_slides=1, seed=4, width=512, height=384)
    val = next((sandbox / "masks").glob("synthetic_*[0-9].tif"))
    (sandbox / "slides.csv").write_text(
        "slide,labels,kind,split,mpp\n"
        f"slides/{SLIDE_STEM}.tif,labels/{SLIDE_STEM}.geojson,scribbles,train,\n"
        f"masks/{val.name},masks/{val.stem}.labels.tif,dense,val,\n",
        encoding="utf-8",
    )


# (document, histoseg subcommand) -> what a person does before that command
HAND_STEPS = {
    ("docs/qupath.md", "corrections"): qupath_corrections,
    ("docs/qupath.md", "fit"): qupath_slide_table,
}


# document -> files its commands must have written (globs in the sandbox), beyond a zero exit status
WRITES = {
    "README.md": ["runs/kidney/lightning_logs/version_1/checkpoints/last.ckpt", "results/report.csv"],
    "docs/qupath.md": [
        "results/index.html",
        f"labels/{SLIDE_STEM}.geojson",
        "runs/corrected/lightning_logs/version_0/checkpoints/*.ckpt",
    ],
    "docs/prediction.md": ["results/report.csv", f"results/{SLIDE_STEM}.labels.tif"],
    "docs/performance.md": ["results/report.csv"],
}


def substitute(words: list[str]) -> list[str]:
    out = []
    for word in words:
        word = word.replace("<stem>", SLIDE_STEM)
        if word == "CKPT":
            word = CKPT_IN_SANDBOX
        if word.endswith(".svs"):
            word = word[: -len(".svs")] + ".tif"
        out.append(word)
    return out


def shrink(args: list[str], sandbox: Path) -> list[str]:
    """The options appended to a ``histoseg`` command (its own come first and are all parsed)."""
    command = args[0]
    informational = any(a == "--print_config" or a.endswith("help") for a in args)
    if informational or command not in ("fit", "predict", "quantify", "sample"):
        return []
    if command in ("quantify", "sample"):
        return TILE_SHRINK
    extra = list(FIT_SHRINK)
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    switched = "--data" in args
    if not switched and any("SyntheticKidneyDataModule" in (sandbox / c).read_text() for c in configs):
        extra += SYNTHETIC_SHRINK
    if command == "predict":
        extra += ["--trainer.callbacks.options.tile_size", "128", "--trainer.logger", "false"]
        extra += ["--trainer.accelerator", "cpu"]
    return extra


def run_histoseg(args: list[str], sandbox: Path, capsys, monkeypatch) -> tuple[int, str]:
    """Exit status and stderr tail of ``python -m histoseg ARGS`` in ``sandbox``."""
    if "ddp" in args:  # Lightning's DDP launcher re-runs the command line: a process of its own
        result = subprocess.run(
            [sys.executable, "-m", "histoseg", *args], cwd=sandbox, capture_output=True, text=True,
            timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        return result.returncode, result.stderr[-2000:]
    monkeypatch.chdir(sandbox)
    capsys.readouterr()
    code = cli_exit_code(args)
    return code, capsys.readouterr().err[-2000:]


def documents_with_commands() -> list[str]:
    return sorted({b.doc for b in all_blocks()})


TALLY: dict[str, list[str]] = {"run": [], "setup": [], "skip": [], "tested by": []}


@pytest.mark.parametrize("doc", documents_with_commands())
def test_every_command_of_the_document_runs(doc, docs_inputs, tmp_path, capsys, monkeypatch):
    """Each command of the document's shell blocks exits 0 on tiny inputs, in order, in one sandbox."""
    ckpt, slide = docs_inputs
    sandbox = make_sandbox(tmp_path, ckpt, slide)
    failures = []
    for block in (b for b in all_blocks() if b.doc == doc):
        where = f"{block.doc}:{block.line}"
        if block.mark is not None:
            kind, what = block.mark
            if kind == "tested by":
                file, _, name = what.partition("::")
                assert (ROOT / file).exists() and f"def {name}(" in (ROOT / file).read_text(), (
                    f"{where}: marked as tested by {what}, which does not exist"
                )
            TALLY[kind] += [f"{where}: {c}  [{what}]" for c in commands(block.text)]
            continue
        for command in commands(block.text):
            if command.startswith(SETUP):
                TALLY["setup"].append(f"{where}: {command}")
                continue
            words = shlex.split(command)
            if words[:3] == ["python", "-m", "histoseg"]:
                args = words[3:]
            elif words[:1] == ["histoseg"]:
                args = words[1:]
            else:
                pytest.fail(
                    f"{where}: {command!r} is not a histoseg command; run it here or mark the block "
                    "<!-- docs-test: skip: REASON --> / <!-- docs-test: tested by tests/FILE.py::TEST -->"
                )
            step = HAND_STEPS.get((doc, args[0]))
            if step is not None:
                step(sandbox)
            args = substitute(args)
            code, err = run_histoseg([*args, *shrink(args, sandbox)], sandbox, capsys, monkeypatch)
            TALLY["run"].append(f"{where}: {command}")
            if code != 0:
                failures.append(f"{where}: {command}\n  exit {code}: {err}")
    assert not failures, "documented commands that fail:\n" + "\n".join(failures)
    missing = [pattern for pattern in WRITES.get(doc, []) if not list(sandbox.glob(pattern))]
    assert not missing, f"{doc}: its commands exited 0 but did not write {missing}"


def test_no_command_hides_in_an_untagged_block():
    """A fenced block without a language that starts with a command is not collected: tag it bash."""
    found = [f"{name}: {c}" for name, text in markdown_sources() for c in untagged_commands(text)]
    assert not found, "tag these blocks ```bash (or ```text for output):\n" + "\n".join(found)


def test_count_of_commands_run_and_marked():
    """Runs last in this file: the tally of the documents' commands (printed; shown with -s or -rA)."""
    blocks = all_blocks()
    total = sum(len(commands(b.text)) for b in blocks)
    counted = sum(len(v) for v in TALLY.values())
    if counted < total:
        pytest.skip("the documents' tests did not all run in this session")
    print(
        f"\ndocs commands: {total} in {len(blocks)} shell blocks of {len(documents_with_commands())} documents"
    )
    for kind in ("run", "setup", "tested by", "skip"):
        print(f"  {kind}: {len(TALLY[kind])}")
        for line in TALLY[kind]:
            print(f"    {line}")
    assert len(TALLY["run"]) >= 10
    assert all(re.search(r"\[.{10,}\]$", line) for line in TALLY["skip"]), "every skip needs its reason"


def test_epoch_counts_in_the_docs_are_the_configs():
    """ "``configs/X.yaml``, N epochs" in the docs and notebooks is X's ``trainer.max_epochs`` (notebook 01
    said 8 against kidney.yaml's 6)."""
    import yaml

    found = []
    for name, text in markdown_sources():
        if name.startswith("notebooks/"):  # code cells too: the notebook's text is in its JSON
            text = (ROOT / name).read_text(encoding="utf-8")
        for config, epochs in re.findall(r"`(configs/\w+\.yaml)`,? (\d+) epochs", text):
            expected = yaml.safe_load((ROOT / config).read_text())["trainer"]["max_epochs"]
            found.append((name, config, int(epochs), expected))
    assert found, "no epoch count found (the pattern is stale)"
    assert all(epochs == expected for _, _, epochs, expected in found), found
