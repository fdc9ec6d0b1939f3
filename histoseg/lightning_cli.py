"""The LightningCLI behind ``histoseg fit|validate|test|predict`` (imported only for those commands).

``fit`` without a ``trainer.precision`` trains at :func:`default_training_precision` (bf16-mixed on
a bf16 GPU or an AMX CPU, else fp32). :class:`HistosegCLI` links ``data.classes``, ``data.mpp``
and ``data.patches.patch_size`` into the model, so every checkpoint describes itself, and checks a
``--ckpt_path`` before Lightning loads it: the file is read once with ``weights_only=True`` (no
pickled code runs; a bad file is one error line, not Lightning's traceback) and must pass the one
compatibility check, :func:`histoseg.inference.checkpoint.check_compatible`, against the model of
the config.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from histoseg.console import epoch_line, fit_summary, quiet_lightning
from histoseg.datamodules import SlideDataModule
from histoseg.errors import CheckpointError, ConfigError, HistosegError
from histoseg.inference.checkpoint import (
    CHECKPOINT_KEY,
    check_compatible,
    read_checkpoint,
    resolve_checkpoint_path,
)
from histoseg.tasks import BaseTask
from histoseg.writers import SlideWriter

log = logging.getLogger(__name__)


def _get(config: object, dotted: str) -> object:
    """``config["a"]["b"]`` for ``"a.b"`` (jsonargparse namespaces or dicts), None when absent."""
    value = config
    for key in dotted.split("."):
        try:
            value = value[key]  # type: ignore[index]
        except (KeyError, TypeError, AttributeError):
            return None
    return value


def _patch_size(data: SlideDataModule) -> int:
    """``data.patches.patch_size`` of the instantiated datamodule (linked into the model)."""
    return data.patches.patch_size


def check_trainer_options(config: object) -> None:
    """One ``error:`` line for trainer/data/model values Lightning or the scheduler would crash on.

    Raises:
        ConfigError: negative or zero epochs/steps (-1 = no limit, as in Lightning), negative
            workers, a learning rate that is not a positive number up to 1, or a
            ``trainer.default_root_dir`` that is a file.
    """
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
    for key in ("data.init_args.loader.num_workers", "data.loader.num_workers"):
        value = _get(config, key)
        if isinstance(value, int) and value < 0:
            raise ConfigError(
                f"data.loader.num_workers={value}: must be 0 (load in the main process) or more; e.g. 4"
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


def default_training_precision(accelerator: object) -> str | None:
    """What ``histoseg fit`` trains at when the config leaves ``trainer.precision`` unset.

    ``bf16-mixed`` where bfloat16 pays: a CUDA GPU with bf16 (Ampere or newer) or a CPU with AMX
    (:func:`histoseg.inference.forward.cpu_has_amx`); ``32-true`` elsewhere (older GPUs, Apple MPS,
    and CPUs without AMX, including AVX512-BF16 ones). Measured with
    ``benchmarks/bench_training_precision.py`` on ``configs/kidney.yaml``, ``kidney_grid.yaml`` and
    ``kidney_scribbles.yaml`` over three seeds on an AMX CPU: the same Dice within the seed spread
    and 1.15-1.22x faster fits; on an AVX512-BF16 CPU without AMX, ``kidney.yaml`` fits ran 0.84x
    as fast in bf16-mixed (2 seeds; docs/performance.md).

    Args:
        accelerator: ``trainer.accelerator`` as configured (``auto``, ``cpu``, ``gpu``, ``cuda``,
            ``mps``, ...).

    Returns:
        A Lightning precision string, or None for accelerators histoseg does not decide for
        (Lightning's own default then applies).
    """
    import torch

    from histoseg.inference.forward import cpu_has_amx

    name = str(accelerator).lower() if isinstance(accelerator, str) else None
    if name in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if (
        name == "auto"
        and getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available()
    ):
        return "32-true"
    if name in ("auto", "cpu"):
        return "bf16-mixed" if cpu_has_amx() else "32-true"
    return None


class EpochLines(Callback):
    """One line per finished epoch on stdout (epoch, mean train loss, val loss and Dice, time): what
    ``fit`` prints instead of the progress bar when stdout is not a terminal."""

    def __init__(self) -> None:
        self.started = 0.0
        self.losses: list[float] = []

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Start the epoch's clock and loss list."""
        self.started, self.losses = time.monotonic(), []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Keep the batch's training loss."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.losses.append(float(loss.detach() if hasattr(loss, "detach") else loss))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Print the epoch's line (rank 0; validation has run by now)."""
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        loss = sum(self.losses) / len(self.losses) if self.losses else None
        line = epoch_line(
            trainer.current_epoch + 1, trainer.max_epochs, loss, dict(trainer.callback_metrics),
            time.monotonic() - self.started,
        )  # fmt: skip
        print(line, flush=True)


def use_epoch_lines(trainer: Any) -> None:
    """Without a terminal on stdout, replace the progress bar by :class:`EpochLines` (a log of a long
    fit otherwise got nothing for its whole run, then one bar frame)."""
    if sys.stdout.isatty() or any(isinstance(c, EpochLines) for c in trainer.callbacks):
        return
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, ProgressBar)] + [EpochLines()]


class HistosegCLI(LightningCLI):
    """LightningCLI with the data -> model links that make checkpoints self-describing."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the data's classes, mpp and patch size into the model."""
        for key in ("classes", "mpp"):
            parser.link_arguments(f"data.{key}", f"model.init_args.{key}", apply_on="instantiate")
        parser.link_arguments(
            "data", "model.init_args.patch_size", compute_fn=_patch_size, apply_on="instantiate"
        )

    _ckpt_block: dict | None = None  # the histoseg block of --ckpt_path, read once

    def before_instantiate_classes(self) -> None:
        """Trainer, data and model options as users type them, checked before Lightning sees them."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_trainer_options(config)
        if self.subcommand == "fit" and _get(config, "trainer.precision") is None:
            choice = default_training_precision(_get(config, "trainer.accelerator"))
            if choice is not None:
                config["trainer"]["precision"] = choice
                log.info("trainer.precision: %s (unset in the config: chosen for this hardware)", choice)

    def _parse_ckpt_path(self) -> None:
        """Read ``--ckpt_path`` once, safely, before Lightning reads its hyperparameters.

        Lightning's own read (in ``LightningCLI.__init__``) would fail with a traceback on a file
        that is not a checkpoint; :func:`histoseg.inference.checkpoint.read_checkpoint` gives one
        line instead. A glob means its newest match. ``last`` needs the trainer: see
        :meth:`_check_ckpt_path`.
        """
        if self.config.get("subcommand"):
            config = self.config[self.config.subcommand]
            path = config.get("ckpt_path")
            if path not in (None, "last", "best", "hpc", "registry"):
                resolved = resolve_checkpoint_path(path)
                self._ckpt_block = read_checkpoint(resolved)[CHECKPOINT_KEY]
                config["ckpt_path"] = str(resolved)
        super()._parse_ckpt_path()

    def _check_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` against this model before Lightning loads it (the one compatibility check).

        ``last`` means the newest ``last.ckpt`` under ``trainer.default_root_dir`` (resume after
        an interruption).
        """
        config = self.config_init[self.subcommand]
        path = config.get("ckpt_path")
        if path is None or path in ("best", "hpc", "registry"):
            return
        block = self._ckpt_block
        if path == "last":
            root = Path(self.trainer.default_root_dir)
            found = sorted(root.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
            if not found:
                raise CheckpointError(
                    f"{root}: no last.ckpt to resume from; run without --ckpt_path, or set "
                    "--trainer.default_root_dir to the interrupted run's folder"
                )
            path = str(found[-1])
            block = read_checkpoint(path)[CHECKPOINT_KEY]
        model = self.model
        if block is None or not isinstance(model, BaseTask):  # pragma: no cover - read above; BaseTask only
            raise HistosegError(f"{path}: not checked; give a histoseg checkpoint to a histoseg model")
        fix = "use the config it was trained with, or fine-tune with model.init_checkpoint"
        for note in check_compatible(path, block, model.checkpoint_spec(), fix=fix):
            log.warning("ckpt_path %s", note)
        config["ckpt_path"] = path

    def _checkpoints_without_validation(self) -> None:
        """Without validation slides: no validation loop, and checkpoints keep the last epoch.

        Training on every labelled slide (the final model) has nothing to validate on. Lightning
        would otherwise warn about an empty validation loader and, at every epoch, that
        ``val_dice`` is missing, and save no best checkpoint; the configs'
        ``ModelCheckpoint(monitor=val_dice, save_last=true)`` then write ``last.ckpt`` at the end of
        every epoch, so ``--ckpt_path last`` resumes a crashed fit from its last epoch (a checkpoint
        without ``save_last`` keeps the newest epoch under its own name).

        Lightning writes ``last.ckpt`` at an epoch's end only when a top-k checkpoint was saved at
        that step; with ``save_top_k=0`` (no second copy) it was written only when the fit ended, so
        a crash after hours left nothing to resume from. Unmonitored, the top-1 checkpoint *is* the
        newest epoch: named ``last`` it is the ``last.ckpt``, rewritten every epoch, one file.
        """
        datamodule = getattr(self, "datamodule", None)
        if not isinstance(datamodule, SlideDataModule):
            return
        try:
            if any(record.split == "val" for record in datamodule.records()):
                return
        except HistosegError:
            return  # the data module reports it in setup, as one line
        self.trainer.limit_val_batches = 0  # no empty validation loop (and no warning about it)
        for callback in self.trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint):
                continue
            monitor = callback.monitor
            if monitor is None or not str(monitor).startswith("val"):
                continue
            written = ": last.ckpt, written after every epoch (--ckpt_path last resumes)"
            log.warning(
                "%s: no validation slides; checkpoints keep the last epoch (not the best %s)%s",
                datamodule.slide_table(),
                monitor,
                written if callback.save_last else "",
            )
            callback.monitor = None
            if callback.save_last:
                callback.filename = "last"  # the newest epoch is last.ckpt, written every epoch
                callback.save_top_k = 1
                callback.save_last = False  # no second copy of it

    def before_fit(self) -> None:
        """Check ``--ckpt_path``; adapt checkpointing when there is nothing to validate on; epoch lines
        instead of a progress bar when stdout is not a terminal."""
        use_epoch_lines(self.trainer)
        self._check_ckpt_path()
        self._checkpoints_without_validation()

    before_validate = before_test = _check_ckpt_path

    def after_fit(self) -> None:
        """The summary: best/last checkpoint, validation Dice per class, the quantify command to run next."""
        if self.trainer.is_global_zero:
            for line in fit_summary(self.trainer, list(getattr(self.model, "classes", []))):
                print(line, file=sys.stderr)

    def before_predict(self) -> None:
        """Prediction needs a SlideWriter callback (it writes the outputs) and a checkpoint."""
        # The ignores here and below: Lightning's callback connector sets Trainer.callbacks,
        # which the Trainer class does not declare.
        if not any(isinstance(c, SlideWriter) for c in self.trainer.callbacks):  # type: ignore[attr-defined]
            raise HistosegError(
                "predict: no output writer; add --trainer.callbacks+=histoseg.writers.SlideWriter "
                "--trainer.callbacks.out DIR (or use 'histoseg quantify')"
            )
        if self.config_init[self.subcommand].get("ckpt_path") is None:
            raise HistosegError("predict: give the trained model with --ckpt_path CKPT")
        self._check_ckpt_path()

    def after_predict(self) -> None:
        """Exit status 1 when any slide failed (listed in the report)."""
        for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, SlideWriter) and getattr(callback, "status", False):
                sys.exit(1)


def run(args: list[str] | None) -> None:
    """Run ``histoseg fit|validate|test|predict`` with ``args`` (None: ``sys.argv``)."""
    quiet_lightning()
    HistosegCLI(
        model_class=BaseTask,
        datamodule_class=SlideDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False, "prog": "histoseg"},  # not "__main__.py" in the usage
        args=args,
        auto_configure_optimizers=False,
    )
