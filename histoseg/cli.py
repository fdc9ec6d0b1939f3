"""The ``histoseg`` command line.

- ``histoseg fit|validate|test|predict --config FILE``: LightningCLI over the tasks
  (:mod:`histoseg.tasks`) and datamodules (:mod:`histoseg.datamodules`); every option is a typed
  ``__init__`` argument, so ``--help`` and ``--print_config`` document them. ``data.classes``,
  ``data.mpp`` and ``data.patch_size`` are linked into the model, so checkpoints carry them.
- ``histoseg quantify --ckpt_path CKPT --slides PATH_OR_GLOB --out DIR``: slide inference and the
  cohort area report (:mod:`histoseg.quantify`).
- ``histoseg synthesize --out DIR``: write synthetic kidney-like slides (:mod:`histoseg.synthetic.generator`).

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
from typing import NoReturn, TextIO

from histoseg import __version__
from histoseg.errors import HistosegError

COMMANDS = ("fit", "validate", "test", "predict", "quantify", "synthesize")


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


def _check_ckpt_argument(argv: list[str]) -> list[str]:
    """Validate a ``--ckpt_path`` file (or glob) before Lightning unpickles it; return argv with it resolved."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--ckpt_path" and i + 1 < len(out):
            index, value = i + 1, out[i + 1]
        elif arg.startswith("--ckpt_path="):
            index, value = i, arg.split("=", 1)[1]
        else:
            continue
        if value in ("last", "best", "hpc", "registry", "null", "None"):
            continue
        from histoseg.inference.checkpoint import read_checkpoint, resolve_checkpoint_path

        resolved = str(resolve_checkpoint_path(value))
        read_checkpoint(resolved)
        out[index] = resolved if index == i + 1 else f"--ckpt_path={resolved}"
    return out


def _get(config: object, dotted: str) -> object:
    """``config["a"]["b"]`` for ``"a.b"`` (jsonargparse namespaces or dicts), None when absent."""
    value = config
    for key in dotted.split("."):
        try:
            value = value[key]  # type: ignore[index]
        except (KeyError, TypeError, AttributeError):
            return None
    return value


def check_trainer_options(config: object) -> None:
    """One ``error:`` line for trainer/data/model values Lightning or the scheduler would crash on.

    Raises:
        ConfigError: negative or zero epochs/steps (-1 = no limit, as in Lightning), negative
            workers, a learning rate that is not a positive number up to 1, or a
            ``trainer.default_root_dir`` that is a file.
    """
    import math
    from pathlib import Path

    from histoseg.errors import ConfigError

    for key, zero_ok in (
        ("max_epochs", False),
        ("max_steps", False),
        ("min_epochs", True),
        ("min_steps", True),
    ):
        value = _get(config, f"trainer.{key}")
        if value is None or value == -1:
            continue
        if not isinstance(value, int) or value < (0 if zero_ok else 1):
            fix = "0 or more" if zero_ok else "at least 1 (or -1 for no limit)"
            raise ConfigError(f"trainer.{key}={value}: must be {fix}; e.g. --trainer.{key} 10")
    for key in ("data.init_args.num_workers", "data.num_workers"):
        value = _get(config, key)
        if isinstance(value, int) and value < 0:
            raise ConfigError(
                f"data.num_workers={value}: must be 0 (load in the main process) or more; e.g. 4"
            )
    lr = _get(config, "model.init_args.lr")
    if isinstance(lr, (int, float)) and not (math.isfinite(lr) and 0 < lr <= 1):
        raise ConfigError(
            f"model.lr={lr}: must be a positive learning rate up to 1; e.g. --model.init_args.lr 1e-3"
        )
    root = _get(config, "trainer.default_root_dir")
    if root is not None:
        path = Path(str(root))
        blocker = next((p for p in (path, *path.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise ConfigError(
                f"trainer.default_root_dir={root}: {blocker} is a file, not a folder; "
                "give a folder for the run's checkpoints and logs"
            )


def _lightning_cli(args: list[str] | None) -> None:
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    import histoseg.datamodules as datamodules
    import histoseg.tasks as tasks

    class HistosegCLI(LightningCLI):
        """LightningCLI with the data -> model links that make checkpoints self-describing."""

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            for key in ("classes", "mpp", "patch_size"):
                parser.link_arguments(f"data.{key}", f"model.init_args.{key}", apply_on="instantiate")

        def before_instantiate_classes(self) -> None:
            """Trainer, data and model options as users type them, checked before Lightning sees them."""
            config = self.config[self.subcommand] if self.subcommand else self.config
            check_trainer_options(config)

        def _resolve_ckpt_path(self) -> None:
            """Check ``--ckpt_path`` before Lightning loads it: a histoseg checkpoint of this model.

            ``last`` means the newest ``last.ckpt`` under ``trainer.default_root_dir`` (resume after
            an interruption); a glob means its newest match.
            """
            config = self.config_init[self.subcommand]
            path = config.get("ckpt_path")
            if path is None or path in ("best", "hpc", "registry"):
                return
            from pathlib import Path

            from histoseg.errors import CheckpointError
            from histoseg.inference.checkpoint import read_checkpoint, resolve_checkpoint_path

            if path == "last":
                root = Path(self.trainer.default_root_dir)
                found = sorted(root.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
                if not found:
                    raise CheckpointError(
                        f"{root}: no last.ckpt to resume from; run without --ckpt_path, or set "
                        "--trainer.default_root_dir to the interrupted run's folder"
                    )
                resolved = found[-1]
            else:
                resolved = resolve_checkpoint_path(path)
            block = read_checkpoint(resolved)["histoseg"]
            model = self.model
            if block["task"] != getattr(model, "task_name", None) or list(block["classes"]) != list(
                model.classes
            ):
                raise CheckpointError(
                    f"{resolved}: a {block['task']} checkpoint for classes {block['classes']} does not fit this "
                    f"{getattr(model, 'task_name', '?')} model for classes {list(model.classes)}; use the config it was "
                    "trained with, or fine-tune with model.init_checkpoint"
                )
            if block["network"] != model.network_config():
                raise CheckpointError(
                    f"{resolved}: network {block['network']} differs from this config's {model.network_config()}; "
                    "use the config the checkpoint was trained with"
                )
            config["ckpt_path"] = str(resolved)

        before_fit = before_validate = before_test = _resolve_ckpt_path

        def before_predict(self) -> None:
            """Prediction needs a SlideWriter callback (it writes the outputs) and a checkpoint."""
            from histoseg.writers import SlideWriter

            if not any(isinstance(c, SlideWriter) for c in self.trainer.callbacks):
                raise HistosegError(
                    "predict: no output writer; add --trainer.callbacks+=histoseg.writers.SlideWriter "
                    "--trainer.callbacks.out DIR (or use 'histoseg quantify')"
                )
            if self.config_init[self.subcommand].get("ckpt_path") is None:
                raise HistosegError("predict: no checkpoint; give the trained model with --ckpt_path CKPT")
            self._resolve_ckpt_path()

        def after_predict(self) -> None:
            """Exit status 1 when any slide failed (listed in the report)."""
            from histoseg.writers import SlideWriter

            for callback in self.trainer.callbacks:
                if isinstance(callback, SlideWriter) and getattr(callback, "status", 0):
                    sys.exit(1)

    HistosegCLI(
        model_class=tasks.BaseTask,
        datamodule_class=datamodules.SlideDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False},
        args=args,
        auto_configure_optimizers=False,
    )


class _ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error:`` line with the fix, like every other error."""

    def error(self, message: str) -> NoReturn:
        raise HistosegError(f"{self.prog}: {message}; see '{self.prog} --help'")


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
    parser.add_argument("--mpp", type=float, default=None, help="level-0 mpp override for slides without one")
    parser.add_argument("--tile_size", type=int, default=None, help="inference tile side in pixels")
    parser.add_argument("--overlap", type=float, default=0.5, help="tile overlap fraction in [0, 1)")
    parser.add_argument(
        "--blend",
        choices=("auto", "gaussian", "crop"),
        default="auto",
        help="how tiles are merged: Gaussian-weighted logits (U-Nets) or centre crops (patch "
        "classifiers, exact); auto picks by model",
    )
    parser.add_argument("--batch_size", type=int, default=4, help="tiles per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument(
        "--method",
        default="atrous",
        choices=("atrous", "shift_and_stitch", "upsample"),
        help="patch classifiers: dense prediction method",
    )
    parser.add_argument(
        "--points",
        default=None,
        help="folder of grid points <slide stem>.points.csv: adds point-count fractions to the report",
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    parser.add_argument("--rank", type=int, default=None, help="this process's rank (default: $RANK or 0)")
    parser.add_argument(
        "--world_size", type=int, default=None, help="number of processes (default: $WORLD_SIZE or 1)"
    )
    parsed = parser.parse_args(argv)
    if parsed.mpp is not None:
        from histoseg.io.slide import check_mpp

        check_mpp(parsed.mpp, "--mpp")
    if not 0 <= parsed.overlap < 1:
        raise HistosegError(f"--overlap {parsed.overlap} must be in [0, 1); e.g. 0.5")
    if parsed.batch_size < 1:
        raise HistosegError(f"--batch_size {parsed.batch_size} must be at least 1; e.g. 4")
    rank, world = _rank_and_world(parsed.rank, parsed.world_size)
    if not parsed.slides.strip():
        raise HistosegError(
            "--slides '': empty slide path; give a slide file, a folder or a glob such as 'slides/*.svs'"
        )
    from histoseg.inference.checkpoint import load_predictor
    from histoseg.quantify import run_quantify

    predictor = load_predictor(parsed.ckpt_path, method=parsed.method, tile_size=parsed.tile_size)
    if parsed.mpp is not None:
        _check_mpp_override(parsed.mpp, predictor.mpp)
    blend = parsed.blend
    if blend == "auto":
        blend = predictor.default_blend
    return run_quantify(
        predictor,
        parsed.slides,
        parsed.out,
        mpp=parsed.mpp,
        tile_size=parsed.tile_size,
        overlap=parsed.overlap,
        blend=blend,
        batch_size=parsed.batch_size,
        device=parsed.device,
        progress=not parsed.no_progress,
        rank=rank,
        world_size=world,
        points=parsed.points,
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


def _check_mpp_override(mpp: float, model_mpp: float) -> None:
    """``--mpp`` is a plausible resolution, and not so coarse that the label map would be upsampled."""
    from histoseg.io.slide import check_mpp

    check_mpp(mpp, "--mpp")
    if mpp > 8 * model_mpp:
        raise HistosegError(
            f"--mpp {mpp:g}: slides this coarse would be upsampled {mpp / model_mpp:.0f}x to the model's "
            f"{model_mpp:g} microns per pixel (the label map is made at that resolution); "
            "check the value, or use a model trained at a coarser resolution"
        )


def _synthesize(argv: list[str]) -> int:
    from histoseg.synthetic import generator as synthetic

    result = synthetic.main(argv)
    return int(result or 0)


USAGE = f"""usage: histoseg [-h] [--version] {{{",".join(COMMANDS)}}} ...

histoseg {__version__}: segmentation and area quantification of histology whole-slide images.

commands:
  fit         train a model:            histoseg fit --config configs/kidney.yaml
  validate    score a checkpoint:       histoseg validate --config CFG --ckpt_path CKPT
  test        score on test slides:     histoseg test --config CFG --ckpt_path CKPT
  predict     Lightning predict loop:   histoseg predict --config CFG --ckpt_path CKPT
  quantify    slides -> label maps, GeoJSON, overlays, area report:
              histoseg quantify --ckpt_path CKPT --slides 'slides/*.svs' --out DIR
  synthesize  write synthetic kidney-like slides: histoseg synthesize --out DIR

'histoseg COMMAND --help' lists a command's options."""


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of ``histoseg`` and ``python -m histoseg``."""
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
        if command == "synthesize":
            sys.exit(_synthesize(argv[1:]))
        checked = _check_ckpt_argument(argv)
        if checked != argv:
            args = argv = checked
        _lightning_cli(None if args is None else argv)
    except HistosegError as exc:
        _fail(_one_line(exc), exc.exit_code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - config errors from jsonargparse and user errors from workers
        user = _user_error(exc)
        if user is not None:
            _fail(_one_line(user), user.exit_code)
        name = type(exc).__name__
        if name in ("ArgumentError", "NSKeyError") or "jsonargparse" in type(exc).__module__:
            _fail(_config_message(exc, argv))
        if name == "MisconfigurationException":
            _fail(f"trainer: {_one_line(exc)}; check the --trainer.* options (histoseg fit --help)")
        if "HistosegError" in str(exc) or "SlideError" in str(exc) or "LabelError" in str(exc):
            _fail(_one_line(exc))
        raise


def _config_message(exc: BaseException, argv: list[str]) -> str:
    """One line for a configuration error from jsonargparse."""
    import re

    text = " ".join(str(exc).split())
    match = re.search(
        r"Option '[^']+' is not accepted|Key \"[^\"]+\" is required|File does not exist: '[^']+'", text
    )
    key = re.search(r'Parser key "([^"]+)"', text)
    if match:
        text = (f"{key.group(1)}: " if key else "") + match.group(0)
    config = None
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 < len(argv):
            config = argv[index + 1]
    where = f"{config}: " if config else ""
    hint = "; check the option names and values (histoseg fit --help, --print_config)"
    return f"{where}invalid configuration: {text[:300]}{hint}"


if __name__ == "__main__":  # pragma: no cover
    main()
