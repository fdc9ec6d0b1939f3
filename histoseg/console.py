"""What ``histoseg fit|validate|test|predict`` prints on the terminal, besides the progress bar.

- :func:`quiet_lightning` drops Lightning's start-up banners and advertising lines from its logs
  ("GPU available: False, used: False", "TPU available", "HPU available", "You are using a CUDA
  device ...", "Seed set to 0", "💡 Tip: ... litlogger / litmodels ..."), so a user error is one
  line and a run shows only what matters (warnings and errors still pass).
- :func:`fit_summary` is printed at the end of ``fit``: the best and last checkpoint paths, the
  validation Dice per class and the ``histoseg quantify`` command to run next with that checkpoint.

No Lightning import here: the trainer is used through its public attributes.

Example:
    >>> import logging
    >>> record = logging.LogRecord("lightning.pytorch", logging.INFO, "", 0, "GPU available: False, used: False", None, None)
    >>> LightningNoise().filter(record)
    False
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["NOISE", "LightningNoise", "epoch_line", "fit_summary", "quiet_lightning"]

NOISE = re.compile(
    r"^\s*(💡\s*)?Tip:|litlogger|litmodels|For seamless cloud"
    r"|^(GPU|TPU|HPU|IPU) available:|^You are using a CUDA device|^LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES"
    r"|^Seed set to |^`Trainer\(limit_\w+=[^)]*\)` was configured so|^Loading `\w+_dataloader` to estimate"
    r"|^`Trainer\.fit` stopped: `max_(epochs|steps)=\S+` reached"
)
"""Log messages of Lightning that say nothing a histoseg user needs (matched with ``search``)."""

_LOGGERS = (
    "lightning.pytorch",
    "lightning.fabric",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
    "lightning_utilities.core.rank_zero",
    "pytorch_lightning",
)


class LightningNoise(logging.Filter):
    """Drops INFO (and lower) records whose message matches :data:`NOISE`."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        if record.levelno > logging.INFO:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        return NOISE.search(message) is None


def quiet_lightning() -> None:
    """Install :class:`LightningNoise` on Lightning's loggers and handlers (idempotent); call after importing Lightning."""
    loggers = [logging.getLogger(name) for name in _LOGGERS] + [logging.getLogger()]
    for logger in loggers:
        for handler in logger.handlers:
            # Lightning's own handler keeps the sys.stderr of its first import: in a process that runs
            # commands one after another with stderr swapped (tests, notebooks) that stream may be
            # closed by now, and every log line became a "--- Logging error ---" traceback.
            if type(handler) is logging.StreamHandler and handler.stream not in (sys.stdout, sys.__stdout__):
                handler.stream = sys.stderr
        for target in [logger, *logger.handlers]:
            if not any(isinstance(f, LightningNoise) for f in target.filters):
                target.addFilter(LightningNoise())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return number if math.isfinite(number) else None


def _checkpoints(trainer: Any) -> tuple[str, str, str, float | None]:
    """``(best path, last path, monitored metric, best score)`` over the trainer's ModelCheckpoint callbacks."""
    best = last = monitor = ""
    score: float | None = None
    for callback in getattr(trainer, "checkpoint_callbacks", None) or []:
        kept = str(getattr(callback, "best_model_path", "") or "")
        if getattr(callback, "monitor", None):
            best = best or kept
        else:  # unmonitored: its checkpoint is the newest epoch, not a best one (fits without validation)
            last = last or kept
        last = last or str(getattr(callback, "last_model_path", "") or "")
        if not monitor and getattr(callback, "monitor", None):
            monitor = str(callback.monitor)
            score = _float(getattr(callback, "best_model_score", None))
    return best, last, monitor, score


def _dice_per_class(metrics: Mapping[str, Any], classes: list[str]) -> str:
    """``"interstitium 0.81, tubules 0.90, ..."`` from ``val_dice_<class>`` metrics (class order)."""
    values = {k[len("val_dice_") :]: _float(v) for k, v in metrics.items() if k.startswith("val_dice_")}
    safe = {re.sub(r"\W+", "_", c): c for c in classes}
    order = [k for k in safe if k in values] + sorted(k for k in values if k not in safe)
    return ", ".join(f"{safe.get(k, k)} {values[k]:.3f}" for k in order if values[k] is not None)


def fit_summary(trainer: Any, classes: list[str] | None = None) -> list[str]:
    """The lines printed at the end of ``histoseg fit``.

    Args:
        trainer: The Lightning ``Trainer`` after ``fit`` (``checkpoint_callbacks``,
            ``callback_metrics``, ``current_epoch``, ``global_step``).
        classes: The model's class names (order of the per-class Dice).

    Returns:
        Lines without newlines: what ran (and at which precision), best/last checkpoint,
        validation Dice (macro and per class, when validated) and the ``histoseg quantify``
        command with the checkpoint to use.
    """
    metrics = dict(getattr(trainer, "callback_metrics", {}) or {})
    best, last, monitor, score = _checkpoints(trainer)
    steps = int(getattr(trainer, "global_step", 0) or 0)
    epochs = int(getattr(trainer, "current_epoch", 0) or 0)
    precision = getattr(trainer, "precision", None)
    lines = [
        f"fit: done, {epochs} epoch{'s' if epochs != 1 else ''}, {steps} optimizer steps"
        + (f", precision {precision}" if isinstance(precision, str) else "")
    ]
    if best:
        suffix = f" ({monitor} {score:.3f})" if monitor and score is not None else ""
        lines.append(f"  best checkpoint: {best}{suffix}")
    if last and last != best:
        lines.append(f"  last checkpoint: {last}")
    if not best and not last:
        lines.append("  no checkpoint saved (checkpointing disabled or fast_dev_run)")
    dice = _float(metrics.get("val_dice"))
    if dice is not None:
        per_class = _dice_per_class(metrics, list(classes or []))
        lines.append(f"  validation Dice {dice:.3f}" + (f": {per_class}" if per_class else ""))
    use = best or last
    if use:
        ckpt = shlex.quote(str(Path(use)))
        slides, first = slides_to_quantify(getattr(trainer, "datamodule", None))
        if first:
            lines.append(f"next: {first}")
        prefix = "      " if first else "next: "
        lines.append(f"{prefix}histoseg quantify --ckpt_path {ckpt} --slides {slides} --out results")
    return lines


def epoch_line(
    epoch: int, max_epochs: int | None, train_loss: float | None, metrics: Mapping[str, Any], seconds: float
) -> str:
    """One finished epoch of ``fit`` as a log line: ``epoch 3/6: train loss 0.412, val Dice 0.801, 212 s``.

    Printed instead of the progress bar when stdout is not a terminal (a log file, a batch job).

    Args:
        epoch: 1-based epoch number.
        max_epochs: The fit's ``trainer.max_epochs`` (None or -1: not shown).
        train_loss: Mean training loss of the epoch (None: no batch ran).
        metrics: The trainer's ``callback_metrics`` (``val_dice``, ``val_loss`` when validated).
        seconds: Wall time of the epoch, validation included.
    """
    parts = [f"train loss {train_loss:.4f}"] if train_loss is not None else []
    for key, name in (("val_loss", "val loss"), ("val_dice", "val Dice")):
        value = _float(metrics.get(key))
        if value is not None:
            parts.append(f"{name} {value:.4f}" if key == "val_loss" else f"{name} {value:.3f}")
    parts.append(f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s")
    of = f"/{max_epochs}" if max_epochs is not None and max_epochs > 0 else ""
    return f"epoch {epoch}{of}: " + ", ".join(parts)


UNSEEN_SEED = 1000  # the README's demo seed: no config trains on it (they use 0 and 100)


def slides_to_quantify(datamodule: Any) -> tuple[str, str | None]:
    """The ``--slides`` of the ``next:`` command, shell-quoted, and a command to run before it (or None).

    The user's own slide table: the folder of its training slides with their extension
    (``'scans/*.svs'``; the folder alone when the extensions differ), relative to the working folder
    when inside it. Generated synthetic slides: ``demo_slides``, made first by a ``histoseg synthesize``
    with a seed the model never saw (quantifying the training slides would measure nothing).
    Anything else (no data module, a table that cannot be read): the placeholder ``'slides/*.svs'``.

    Args:
        datamodule: The fit's data module (``trainer.datamodule``), used through ``synthetic`` and
            ``records()`` (rows with ``slide`` and ``split``).
    """
    placeholder = "'slides/*.svs'", None
    synthetic = getattr(datamodule, "synthetic", None)
    if synthetic is not None:
        seed = UNSEEN_SEED if getattr(synthetic, "seed", None) != UNSEEN_SEED else 2 * UNSEEN_SEED
        return "demo_slides", f"histoseg synthesize --out demo_slides --n 2 --seed {seed}   # slides it never saw"
    try:
        records = list(datamodule.records())
    except Exception:  # noqa: BLE001 - no data module or no readable table: the placeholder
        return placeholder
    slides = [Path(r.slide) for r in records if getattr(r, "split", None) == "train"] or [
        Path(r.slide) for r in records
    ]
    if not slides:
        return placeholder
    folders = {p.parent.resolve() for p in slides}
    folder = folders.pop() if len(folders) == 1 else Path(os.path.commonpath([str(f) for f in folders]))
    try:
        folder = folder.relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    suffixes = {p.suffix.lower() for p in slides}
    where = "" if str(folder) == "." else f"{folder}/"
    pattern = f"{where}*{slides[0].suffix}" if len(suffixes) == 1 and slides[0].suffix else str(folder)
    return shlex.quote(pattern), None
