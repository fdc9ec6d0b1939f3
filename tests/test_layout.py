"""tests/ mirrors histoseg/, as docs/DESIGN.md's "Where code and tests live" says.

A newcomer finds the test of ``histoseg/<package>/<module>.py`` at ``tests/<package>/test_<module>.py``
(``tests/test_<module>.py`` for a module at the top). Every module has that file or a reason on
:data:`EXCEPTIONS`; every test file sits in a row of DESIGN.md's table; every folder of tests is a
package (``__init__.py``), so two folders may hold same-named test files.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "DESIGN.md"

_STAGE = (
    "a stage of the synthetic generator: every pixel it paints is pinned by tests/synthetic/test_render.py"
)
EXCEPTIONS: dict[str, str] = {
    # module (relative to histoseg/) -> why it has no test file of its own
    "__main__.py": "one call of cli.main; run as `python -m histoseg` by tests/test_cli.py",
    "synthetic/__main__.py": "one call of synthetic.command.main; run by tests/synthetic/test_command.py",
    "synthetic/canvas.py": _STAGE,
    "synthetic/capsule.py": _STAGE,
    "synthetic/cells.py": _STAGE,
    "synthetic/glomeruli.py": _STAGE,
    "synthetic/interstitium.py": _STAGE,
    "synthetic/nuclei.py": _STAGE,
    "synthetic/tubules.py": _STAGE,
    "synthetic/vessels.py": _STAGE,
}


def design_table(text: str | None = None) -> dict[str, list[str]]:
    """DESIGN.md's "Where code and tests live" table: ``{kind: [backticked paths of its row]}``."""
    text = DESIGN.read_text(encoding="utf-8") if text is None else text
    section = text.split("## Where code and tests live", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("kind", "---"):
            rows[cells[0]] = re.findall(r"`([^`]+)`", cells[1])
    return rows


def test_file_of(module: str) -> str:
    """``tests/...`` path of the test file of ``module`` (a path relative to ``histoseg/``)."""
    path = Path(module)
    return str(Path("tests", *path.parent.parts, f"test_{path.stem}.py"))


test_file_of.__test__ = False  # a helper, not a test


def package_modules(package: Path) -> list[str]:
    """Modules of ``package`` (paths relative to it), ``__init__.py`` files left out."""
    return sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if p.name != "__init__.py")


def missing_test_files(root: Path, exceptions: dict[str, str]) -> list[str]:
    """Modules of ``root/histoseg`` without their test file and not on ``exceptions``."""
    return [
        f"histoseg/{m} -> {test_file_of(m)}"
        for m in package_modules(root / "histoseg")
        if m not in exceptions and not (root / test_file_of(m)).exists()
    ]


def misplaced_test_files(root: Path, suites: set[str], repository_checks: set[str]) -> list[str]:
    """Test files that neither mirror a module nor sit in a suite folder or the repository checks."""
    package, tests = root / "histoseg", root / "tests"
    wrong = []
    for path in sorted(tests.rglob("test_*.py")):
        rel = path.relative_to(tests)
        folder = rel.parent
        if rel.parts[0] in suites:
            if rel.parts[0] == "benchmarks" and not (root / "benchmarks" / (path.stem[5:] + ".py")).exists():
                wrong.append(f"{path.relative_to(root)}: no benchmarks/{path.stem[5:]}.py")
            continue
        if str(path.relative_to(root)) in repository_checks:
            continue
        stem = path.stem[len("test_") :]
        modules = {p.stem for p in (package / folder).glob("*.py") if p.name != "__init__.py"}
        if not (stem in modules or any(stem.startswith(m + "_") for m in modules)):
            wrong.append(f"{path.relative_to(root)}: tests no module of histoseg/{folder}")
    return wrong


def suite_folders(table: dict[str, list[str]]) -> set[str]:
    """Folders of tests/ that DESIGN.md gives to suites (not mirrors of a package)."""
    return {
        p.split("/")[1]
        for kind, paths in table.items()
        if not kind.startswith("shared fixtures")
        for p in paths
        if re.fullmatch(r"tests/[a-z_]+/", p) and not (ROOT / "histoseg" / p.split("/")[1]).is_dir()
    }


def repository_checks(table: dict[str, list[str]]) -> set[str]:
    (row,) = [paths for kind, paths in table.items() if kind.startswith("checks of the repository")]
    return set(row)


def test_every_module_has_its_test_file_or_a_reason() -> None:
    missing = missing_test_files(ROOT, EXCEPTIONS)
    assert not missing, (
        "write these test files (or add the module to EXCEPTIONS with a reason):\n" + "\n".join(missing)
    )


def test_exceptions_are_still_exceptions() -> None:
    """An exception whose module is gone or now has its test file is removed from the list."""
    stale = [
        m for m in EXCEPTIONS if not (ROOT / "histoseg" / m).exists() or (ROOT / test_file_of(m)).exists()
    ]
    assert not stale, f"remove {stale} from EXCEPTIONS in tests/test_layout.py"
    assert len(EXCEPTIONS) <= 12, "the exception list is meant to stay short"


def test_every_test_file_sits_where_design_md_says() -> None:
    table = design_table()
    wrong = misplaced_test_files(ROOT, suite_folders(table), repository_checks(table))
    assert not wrong, "move these test files to their mirror path (docs/DESIGN.md):\n" + "\n".join(wrong)


def test_design_md_names_only_what_exists() -> None:
    """Every concrete path of DESIGN.md's table exists, and every folder of tests/ is in it or mirrors a
    package."""
    table = design_table()
    concrete = [
        p for paths in table.values() for p in paths if "<" not in p and ("/" in p or p.endswith(".md"))
    ]
    assert len(concrete) >= 15
    absent = [p for p in concrete if not (ROOT / p.rstrip("/")).exists()]
    assert not absent, f"docs/DESIGN.md names {absent}, which do not exist"
    folders = {p.relative_to(ROOT / "tests").parts[0] for p in (ROOT / "tests").glob("*/**/test_*.py")}
    unexplained = [
        f for f in sorted(folders) if f not in suite_folders(table) and not (ROOT / "histoseg" / f).is_dir()
    ]
    assert not unexplained, f"tests/{unexplained} are neither a package's mirror nor a row of docs/DESIGN.md"
    assert suite_folders(table) == {"reliability", "benchmarks", "workflows"}


def test_every_test_folder_is_a_package() -> None:
    """Same-named test files in two folders (labels/test_dense.py, models/test_dense.py) import as
    ``tests.labels.test_dense`` and ``tests.models.test_dense`` only if every folder is a package."""
    folders = {p.parent for p in (ROOT / "tests").rglob("*.py")}
    missing = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").exists())
    assert not missing, f"add an empty __init__.py to {missing}"


def test_the_guard_catches_a_missing_and_a_misplaced_test_file(tmp_path: Path) -> None:
    """Known answers on a made-up tree: the checks are not vacuous."""
    for name in [
        "histoseg/cli.py",
        "histoseg/io/tiff.py",
        "histoseg/io/slide.py",
        "histoseg/io/__init__.py",
        "histoseg/synthetic/render.py",
        "tests/test_cli.py",
        "tests/io/test_tiff.py",
        "tests/io/test_tiff_pyramid.py",
        "tests/io/test_tiffio.py",
        "tests/reliability/test_faults.py",
        "tests/benchmarks/test_bench_gone.py",
        "tests/test_readme.py",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert missing_test_files(tmp_path, {"synthetic/render.py": "pinned"}) == [
        "histoseg/io/slide.py -> tests/io/test_slide.py"
    ]
    assert (
        missing_test_files(tmp_path, {})[-1]
        == "histoseg/synthetic/render.py -> tests/synthetic/test_render.py"
    )
    assert misplaced_test_files(tmp_path, {"reliability", "benchmarks"}, {"tests/test_readme.py"}) == [
        "tests/benchmarks/test_bench_gone.py: no benchmarks/bench_gone.py",
        "tests/io/test_tiffio.py: tests no module of histoseg/io",
    ]
