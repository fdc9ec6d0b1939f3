"""The ``histoseg`` command line.

- ``histoseg fit|validate|test|predict --config FILE``: LightningCLI (:mod:`histoseg.lightning_cli`) over the tasks
  (:mod:`histoseg.tasks`) and datamodules (:mod:`histoseg.datamodules`); every option is a typed
  ``__init__`` argument, so ``--help`` and ``--print_config`` document them. ``data.classes``,
  ``data.mpp`` and ``data.patches.patch_size`` are linked into the model, so checkpoints carry them.
- ``histoseg quantify --ckpt_path CKPT --slides PATH_OR_GLOB --out DIR``: slide inference and the
  cohort area report (:mod:`histoseg.quantify`).
- ``histoseg synthesize --out DIR``: write synthetic kidney-like slides (:mod:`histoseg.synthetic`).

User errors print one line ``error: <file or option>: <what is wrong>; <fix>`` on stderr and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from histoseg import __version__
from histoseg.errors import ArgumentParser, ConfigError, HistosegError, run_interruptible

if TYPE_CHECKING:
    from histoseg.inference.options import InferenceOptions
    from histoseg.inference.predictor import Predictor

COMMANDS = ("fit", "validate", "test", "predict", "quantify", "sample", "synthesize", "corrections", "doctor")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Logs to whatever ``sys.stderr`` is at the time (stays valid when stderr is swapped)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _one_line(exc: BaseException) -> str:
    """The user-facing line of an exception (also when re-raised from a DataLoader worker)."""
    text = str(exc)
    if "Original Traceback" in text:  # torch re-raises worker errors with the worker's traceback
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        text = lines[-1] if lines else text
        if ": " in text and text.split(": ", 1)[0].rsplit(".", 1)[-1].endswith("Error"):
            text = text.split(": ", 1)[1]
    return " ".join(text.split())


def _user_error(exc: BaseException) -> HistosegError | None:
    """The HistosegError behind ``exc`` (jsonargparse and Lightning wrap errors raised in __init__/setup)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, HistosegError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _lightning_cli(args: list[str] | None) -> None:
    from histoseg.lightning_cli import run  # imports Lightning (seconds): only for these commands

    run(args)


class _DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default (``(default: 0.5)``) unless its help already names one or
    there is none to show (None, a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or action.option_strings == []
        ):
            return action.help
        return f"{text} (default: {default})"


class _ArgumentParser(ArgumentParser):
    """The shared parser of every command (:class:`histoseg.errors.ArgumentParser`: usage errors are
    one line), with the defaults shown in its help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def _quantify(argv: list[str]) -> int:
    parser = _ArgumentParser(
        prog="histoseg quantify",
        description="Predict label maps for slides and write GeoJSON, overlays and the cohort area report.",
    )
    parser.add_argument("--ckpt_path", required=True, help="histoseg checkpoint (.ckpt from 'histoseg fit')")
    parser.add_argument(
        "--slides", required=True, help="slide file, folder, or glob (quote it: 'slides/*.svs')"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--mpp", type=float, default=None, help="level-0 mpp override (default: read from each slide)"
    )
    from histoseg.inference import options as inference_options

    inference_options.add_arguments(parser)
    parser.add_argument(
        "--method",
        default="atrous",
        choices=("atrous", "shift_and_stitch", "upsample"),
        help="patch classifiers: dense prediction method",
    )
    parser.add_argument(
        "--points",
        default=None,
        help="folder of counted points (histoseg sample's --out, classified): adds each slide's "
        "design-matched estimates and the headline if_estimate to the report (docs/intervals.md)",
    )
    parser.add_argument(
        "--crossfit",
        nargs="+",
        default=[],
        metavar="CKPT",
        help="with --points: the fold checkpoints fitted from 'histoseg sample --crossfit' configs (paths or "
        "quoted globs); adds cross-fitted PPI, the headline when defined",
    )
    parser.add_argument(
        "--target_halfwidth",
        type=float,
        default=0.05,
        help="with --points: the interval half-width (0.05 = +-5 pp) the report says how many points would reach",
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    parser.add_argument("--rank", type=int, default=None, help="this process's rank (default: $RANK or 0)")
    parser.add_argument(
        "--world_size", type=int, default=None, help="number of processes (default: $WORLD_SIZE or 1)"
    )
    parsed = parser.parse_args(argv)
    options = inference_options.from_arguments(parsed)  # every inference option checked here, once
    rank, world = _rank_and_world(parsed.rank, parsed.world_size)
    if not parsed.slides.strip():
        raise HistosegError(
            "--slides '': empty slide path; give a slide file, a folder or a glob such as 'slides/*.svs'"
        )
    from histoseg.inference.checkpoint import load_predictor
    from histoseg.quantify import run_quantify

    predictor = load_predictor(parsed.ckpt_path, method=parsed.method, tile_size=options.tile_size)
    return run_quantify(  # checks --mpp (quantify.Cohort, before anything is written)
        predictor,
        parsed.slides,
        parsed.out,
        options,
        mpp=parsed.mpp,
        progress=not parsed.no_progress,
        rank=rank,
        world_size=world,
        points=parsed.points,
        target_halfwidth=parsed.target_halfwidth,
        crossfit=parsed.crossfit,
    )


def _sample_parser() -> _ArgumentParser:
    """The parser of ``histoseg sample`` (its own options and the inference options)."""
    parser = _ArgumentParser(
        prog="histoseg sample",
        description=(
            "Place counting points on each slide for a pathologist to classify (QuPath GeoJSON and CSV, "
            "with the design record quantify --points needs); run again to add a round of points."
        ),
    )
    parser.add_argument("--out", required=True, help="points folder (one design and points files per slide)")
    parser.add_argument("--results", default=None, help="a 'histoseg quantify' output folder: its label maps place the points")
    parser.add_argument("--ckpt_path", default=None, help="or: a checkpoint, with --slides, to predict the label maps here")
    parser.add_argument("--slides", default=None, help="slide file, folder, or glob (with --ckpt_path)")
    parser.add_argument("--n", type=int, default=100, help="points per slide; in a later round, points to add")
    parser.add_argument(
        "--design",
        default="stratified",
        choices=("grid", "random", "stratified"),
        help="stratified: strata from the model's map, more points where it is unsure (recommended, "
        "docs/intervals.md); grid: systematic with a random offset (efficient, but can resonate with "
        "regularly packed structures); random: uniform",
    )
    parser.add_argument(
        "--strata",
        default="class+edge",
        choices=("class+edge", "class", "none"),
        help="strata of --design stratified: the model's class, split into boundary and interior cells",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the placement (default: drawn and recorded)")
    parser.add_argument(
        "--margin_um", type=float, default=50.0, help="the frame: the model's tissue grown by this margin (µm)"
    )
    parser.add_argument(
        "--mpp", type=float, default=None, help="level-0 mpp override (default: read from each slide)"
    )
    parser.add_argument(
        "--crossfit",
        type=int,
        default=0,
        metavar="K",
        help="instead of placing points: split the classified points into K folds and write one fine-tuning "
        "config per fold into OUT/crossfit (needs --ckpt_path, the model to fine-tune, and --slides)",
    )
    parser.add_argument(
        "--finetune_steps", type=int, default=64, help="with --crossfit: optimisation steps of each fold's fine-tuning"
    )
    from histoseg.inference import options as inference_options

    inference_options.add_arguments(parser)
    return parser


def _sample_predictor(parsed: argparse.Namespace, options: InferenceOptions) -> Predictor | None:
    """The model that predicts ``--slides`` (None with ``--results``), after checking the options go together."""
    predictor = None
    if parsed.ckpt_path is not None:
        if parsed.slides is None:
            raise HistosegError(
                "--ckpt_path without --slides; give --slides too (the slides to predict), or use --results"
            )
        from histoseg.inference.checkpoint import load_predictor

        predictor = load_predictor(parsed.ckpt_path, tile_size=options.tile_size)
        if parsed.mpp is not None:
            from histoseg.io.slide import check_mpp_override

            check_mpp_override(parsed.mpp, predictor.mpp)
    elif parsed.slides is not None:
        raise HistosegError(
            "--slides without --ckpt_path; "
            "give --ckpt_path too (the model that predicts them), or use --results"
        )
    return predictor


def _sample(argv: list[str]) -> int:
    """``histoseg sample``: place a round of counting points, or with ``--crossfit`` write the fold fine-tunings."""
    from histoseg.inference import options as inference_options

    parsed = _sample_parser().parse_args(argv)
    options = inference_options.from_arguments(parsed)
    from histoseg.sample import run_crossfit, run_sample

    if parsed.crossfit:
        if parsed.ckpt_path is None or parsed.slides is None:
            raise HistosegError("--crossfit: needs the model the folds fine-tune and its slides; give --ckpt_path and --slides too")
        return run_crossfit(
            parsed.out,
            ckpt_path=parsed.ckpt_path,
            slides=parsed.slides,
            folds=parsed.crossfit,
            seed=0 if parsed.seed is None else parsed.seed,
            steps=parsed.finetune_steps,
            mpp=parsed.mpp,
        )

    predictor = _sample_predictor(parsed, options)
    return run_sample(
        parsed.out,
        results=parsed.results,
        predictor=predictor,
        slides=parsed.slides,
        options=options,
        n=parsed.n,
        design=parsed.design,
        strata=parsed.strata,
        seed=parsed.seed,
        margin_um=parsed.margin_um,
        mpp=parsed.mpp,
    )


def _int_option(value: int | None, option: str, variable: str, default: int) -> int:
    """An option's value, else the environment variable's (an integer), else ``default``."""
    if value is not None:
        return value
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise HistosegError(
            f"${variable}={text!r}: not an integer (it sets {option}); unset it or pass {option} N"
        ) from None


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``--rank``/``--world_size`` (or ``$RANK``/``$WORLD_SIZE``), checked before anything is written."""
    rank = _int_option(rank, "--rank", "RANK", 0)
    world = _int_option(world_size, "--world_size", "WORLD_SIZE", 1)
    if world < 1 or not 0 <= rank < world:
        raise HistosegError(
            f"--rank {rank} --world_size {world}: need world_size >= 1 and 0 <= rank < world_size; "
            "e.g. --rank 0 --world_size 2 and --rank 1 --world_size 2"
        )
    return rank, world


def _synthesize(argv: list[str]) -> int:
    from histoseg.synthetic import main

    result = main(argv, prog="histoseg synthesize")
    return int(result or 0)


def _tool(command: str, argv: list[str]) -> int:
    """The small commands: ``doctor`` (:mod:`histoseg.doctor`), ``corrections`` (:mod:`histoseg.corrections`)."""
    if command == "doctor":
        from histoseg.doctor import main as doctor

        return doctor(argv)
    from histoseg.corrections import main as corrections

    return corrections(argv)


USAGE = f"""usage: histoseg [-h] [--version] {{{",".join(COMMANDS)}}} ...

histoseg {__version__}: segmentation and area quantification of histology whole-slide images.

commands:
  fit         train a model:            histoseg fit --config configs/kidney.yaml
  validate    score a checkpoint:       histoseg validate --config CFG --ckpt_path CKPT
  test        score on test slides:     histoseg test --config CFG --ckpt_path CKPT
  predict     Lightning predict loop:   histoseg predict --config CFG --ckpt_path CKPT
  quantify    slides -> label maps, GeoJSON, overlays, area report:
              histoseg quantify --ckpt_path CKPT --slides 'slides/*.svs' --out DIR
  sample      counting points for a pathologist to classify (then quantify --points):
              histoseg sample --results DIR --out points/ --n 100
  synthesize  write synthetic kidney-like slides: histoseg synthesize --out DIR
  corrections QuPath-corrected GeoJSON -> training labels (docs/qupath.md):
              histoseg corrections --predicted A.geojson --corrected B.geojson --out labels.geojson
  doctor      check the installation (OpenSlide, weights, GPUs, cache, disk): histoseg doctor

'histoseg COMMAND --help' lists a command's options."""


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of ``histoseg`` and ``python -m histoseg`` (``args`` None: the process's own arguments).

    A Ctrl-C at any moment ends with one line and exit status 130, partial outputs removed
    (:func:`histoseg.errors.run_interruptible`; ``python -m histoseg`` handles SIGINT from its first import).
    """
    run_interruptible(lambda: _main(args), whole_process=args is None)


def _main(args: Sequence[str] | None) -> None:
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0 if argv else 2)
    if argv[0] == "--version":
        print(f"histoseg {__version__}")
        sys.exit(0)
    command = argv[0]
    if command not in COMMANDS:
        _fail(f"unknown command {command!r}; use one of {', '.join(COMMANDS)} (histoseg --help)")
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("histoseg")
    if not logger.handlers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
    try:
        if command == "quantify":
            code = _quantify(argv[1:])
            sys.exit(code)
        if command == "sample":
            sys.exit(_sample(argv[1:]))
        if command == "synthesize":
            sys.exit(_synthesize(argv[1:]))
        if command in ("corrections", "doctor"):
            sys.exit(_tool(command, argv[1:]))
        check_moved_options(argv)
        cleaned = _drop_synthetic_on_data_switch(argv)
        _lightning_cli(None if args is None and cleaned == argv else cleaned)
    except HistosegError as exc:
        _fail(_one_line(exc), exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - config errors from jsonargparse and user errors from workers
        user = _user_error(exc)
        if user is not None:
            _fail(_one_line(user), user.exit_code)
        name = type(exc).__name__
        if (
            name in ("ArgumentError", "NSKeyError", "MisconfigurationException")
            or "jsonargparse" in type(exc).__module__
        ):
            _fail(_config_message(exc, argv))
        if name == "MisconfigurationException":
            _fail(f"trainer: {_one_line(exc)}; check the --trainer.* options (histoseg fit --help)")
        if "HistosegError" in str(exc) or "SlideError" in str(exc) or "LabelError" in str(exc):
            _fail(_one_line(exc))
        raise


def _config_files(argv: list[str]) -> list[str]:
    """The ``--config`` files of the command line, in order (``--config FILE`` and ``--config=FILE``)."""
    files = []
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            files.append(argv[index + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def _moved(key: str) -> str | None:
    """The grouped place of a flat data option (``data.brush_um`` -> ``data.labels.brush_um``), or None."""
    from histoseg.training_options import MOVED_OPTIONS

    for prefix in ("data.init_args.", "data."):
        if key.startswith(prefix):
            new = MOVED_OPTIONS.get(key[len(prefix) :])
            return None if new is None else prefix + new
    return None


def check_moved_options(argv: list[str]) -> None:
    """One ``error:`` line for a data option written flat, as before the options were grouped.

    Looks at ``--data.<name>`` options and at ``data:`` / ``data.init_args:`` keys of every
    ``--config`` file (:data:`histoseg.training_options.MOVED_OPTIONS`), before Lightning is imported.

    Raises:
        ConfigError: naming the option (or the config file) and where the option went.
    """
    from histoseg.training_options import OPTION_GROUPS

    groups = ", ".join(OPTION_GROUPS)
    for arg in argv:
        if arg.startswith("--data."):
            key = arg[2:].split("=", 1)[0]
            new = _moved(key)
            if new is not None:
                raise ConfigError(
                    f"--{key}: moved to --{new} (training options are grouped: {groups}); use --{new}"
                )
    for name, data in _config_data(argv):
        blocks = [("data.", data)]
        if isinstance(data.get("init_args"), dict):
            blocks.append(("data.init_args.", data["init_args"]))
        for prefix, block in blocks:
            for key in block:
                new = _moved(prefix + str(key))
                if new is not None:
                    group, field = new[len(prefix) :].split(".")
                    raise ConfigError(
                        f"{name}: {prefix}{key} moved to {new} (training options are grouped: {groups}); "
                        f"write it as '{field}: ...' inside a '{group}:' block under {prefix.rstrip('.')}"
                    )


def _config_data(argv: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """``(file, its data: block)`` of every readable ``--config`` file that has one, in order.

    Unreadable files and files that are not YAML are left out: the configuration parser reports them
    as one line, with the file's own problem.
    """
    import yaml

    found = []
    for name in _config_files(argv):
        try:
            with open(name, encoding="utf-8") as handle:
                document = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        data = document.get("data") if isinstance(document, dict) else None
        if isinstance(data, dict):
            found.append((name, data))
    return found


def _drop_synthetic_on_data_switch(argv: list[str]) -> list[str]:
    """``argv`` with ``--data.synthetic null`` before a ``--data CLASS`` that leaves a config's synthetic slides.

    jsonargparse keeps the init_args of the config's data class that the new class also accepts when the
    command line switches the class (``--config configs/kidney_scribbles.yaml --data
    histoseg.datamodules.SlideDataModule --data.slides slides.csv``, as docs/qupath.md fine-tunes).
    :class:`~histoseg.datamodules.SlideDataModule` accepts ``synthetic``, so the generated slides' block
    was carried over, already parsed, and failed to validate again ("Does not validate against any of
    the Union subtypes"); had it passed, the fit would have mixed the synthetic slides with the user's
    table. Setting it to null on the config's class first, then switching, keeps every other option.
    """
    import re

    synthetic = False
    for _, data in _config_data(argv):
        init_args = data.get("init_args")
        init = init_args if isinstance(init_args, dict) else data
        synthetic = synthetic or init.get("synthetic") is not None
    if not synthetic:
        return argv
    out: list[str] = []
    for index, arg in enumerate(argv):
        value = argv[index + 1] if arg == "--data" and index + 1 < len(argv) else None
        value = arg.split("=", 1)[1] if arg.startswith("--data=") else value
        if value and re.fullmatch(r"[\w.]+", value) and not value.endswith("SyntheticKidneyDataModule"):
            out += ["--data.synthetic", "null"]
        out.append(arg)
    return out


def _dotted_keys(data: object, prefix: str = "") -> set[str]:
    """Every key path of a parsed YAML document (``trainer``, ``trainer.max_epochs``, ...)."""
    keys: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            keys.add(path)
            keys |= _dotted_keys(value, f"{path}.")
    return keys


def _config_at_fault(text: str, configs: list[str]) -> tuple[str | None, str | None]:
    """``(file, its own problem)``: the config file an error is about, and a message when the file itself
    is the problem (missing, not YAML); ``(None, None)`` when no single file can be named.

    A missing or unparsable file is at fault; otherwise the last file that sets the key the error names
    (later files override earlier ones, so the last one's value is the one refused).
    """
    import re

    import yaml

    documents: list[tuple[str, object]] = []
    for name in configs:
        try:
            with open(name, encoding="utf-8") as handle:
                documents.append((name, yaml.safe_load(handle)))
        except OSError as exc:
            return name, f"cannot read the configuration ({exc.strerror}); check the --config path"
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            return name, f"not valid YAML{where} ({problem}); fix the file (--print_config shows a valid one)"
        except UnicodeDecodeError:
            return name, "not a UTF-8 text file; save the configuration as UTF-8 YAML"
    keys = re.findall(r"option '([^']+)'|Key \"([^\"]+)\"|Parser key \"([^\"]+)\"", text)
    names = [next(k for k in group if k) for group in keys]
    for key in reversed(names):  # the innermost key is named last
        for name, data in reversed(documents):
            found = _dotted_keys(data)
            if key in found or any(k.endswith(f".{key}") for k in found):
                return name, None
    if "unrecognized arguments" in text or (names and "is required" not in text):
        return None, None  # a command-line option, not a file
    return (configs[0], None) if len(configs) == 1 else (None, None)


def _config_message(exc: BaseException, argv: list[str]) -> str:
    """One line for a configuration error from jsonargparse, naming the config file at fault."""
    import re

    text = " ".join(str(exc).replace("`", "").split()).rstrip(". ")
    match = re.search(
        r"Option '[^']+' is not accepted|Key \"[^\"]+\" is required|File does not exist: '[^']+'", text
    )
    key = re.search(r'Parser key "([^"]+)"', text)
    if match:
        text = (f"{key.group(1)}: " if key else "") + match.group(0)
    configs = _config_files(argv)
    config, problem = _config_at_fault(text, configs) if configs else (None, None)
    if problem is not None:
        return f"{config}: {problem}"
    where = f"{config}: " if config else ""
    hint = "; check the option names and values (histoseg fit --help, --print_config)"
    if len(text) > 300:  # whole words: the cut is marked, never mid-word
        text = text[:300].rsplit(" ", 1)[0].rstrip(" :,;-") + " ..."
    return f"{where}invalid configuration: {text}{hint}"


if __name__ == "__main__":  # pragma: no cover
    main()
