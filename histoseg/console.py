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
import re
import shlex
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["NOISE", "LightningNoise", "fit_summary", "quiet_lightning"]

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
        lines.append(f"next: histoseg quantify --ckpt_path {ckpt} --slides 'slides/*.svs' --out results")
    return lines
