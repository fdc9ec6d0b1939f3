r"""Reading histoseg checkpoints safely and turning them into :class:`~histoseg.inference.predictor.Predictor`\\ s.

Checkpoints are read with ``torch.load(weights_only=True)``: no pickled code is executed, so a
checkpoint from an untrusted source cannot run anything. A histoseg checkpoint is a Lightning
checkpoint with a ``"histoseg"`` block (version, task, classes, mpp, patch size, network
arguments) next to the ``state_dict``; the network is rebuilt from those arguments without any
download and the weights loaded into it.

Example:
    >>> from histoseg.inference.checkpoint import load_predictor
    >>> predictor = load_predictor("runs/kidney/checkpoints/last.ckpt")  # doctest: +SKIP
    >>> predictor.classes, predictor.mpp  # doctest: +SKIP
    (['background', 'interstitium', 'tubules', 'glomeruli', 'other'], 1.0)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from histoseg.errors import CheckpointError
from histoseg.inference.predictor import Predictor
from histoseg.io.files import sha256_file

CHECKPOINT_KEY = "histoseg"


def resolve_checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """A checkpoint path, or the newest file matching a glob such as ``runs/kidney/**/last.ckpt``.

    Raises:
        CheckpointError: a glob that matches nothing.
    """
    text = str(path)
    if any(ch in text for ch in "*?["):
        import glob

        matches = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
        if not matches:
            raise CheckpointError(
                f"{text}: no checkpoint matches; train one first (histoseg fit --config ...) or give its path"
            )
        return max(matches, key=lambda p: p.stat().st_mtime)
    return Path(text)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a histoseg checkpoint dictionary (weights only, on the CPU).

    ``path`` may be a glob (the newest match is used, see :func:`resolve_checkpoint_path`).

    Raises:
        CheckpointError: missing, unreadable, or not a histoseg checkpoint.
    """
    path = resolve_checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; give the .ckpt written by 'histoseg fit'")
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is not a loadable checkpoint
        import pickle

        if isinstance(exc, pickle.UnpicklingError):
            reason = "not a PyTorch checkpoint, or one that would need to run code to load"
        else:
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable histoseg checkpoint ({reason}); give the .ckpt written by 'histoseg fit'"
        ) from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path}: not a histoseg checkpoint (no '{CHECKPOINT_KEY}' block); give the .ckpt written by 'histoseg fit'"
        )
    block = checkpoint[CHECKPOINT_KEY]
    for key in ("task", "classes", "mpp", "patch_size", "network"):
        if key not in block:
            raise CheckpointError(
                f"{path}: histoseg block lacks '{key}'; the checkpoint is damaged or from another tool"
            )
    _check_block(path, block)
    return checkpoint


def _check_block(path: Path, block: dict[str, Any]) -> None:
    """The checkpoint's own facts (classes, mpp, patch size, network) are usable, before any output exists.

    Raises:
        CheckpointError: naming the bad entry.
    """
    import math

    from histoseg.io.slide import MPP_RANGE

    damaged = "the checkpoint is damaged or was edited; use the .ckpt written by 'histoseg fit'"
    classes = block["classes"]
    if (
        not isinstance(classes, (list, tuple))
        or not 2 <= len(classes) <= 255
        or not all(isinstance(c, str) and c.strip() for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise CheckpointError(f"{path}: classes {classes!r} must be 2 to 255 distinct names; {damaged}")
    mpp = block["mpp"]
    low, high = MPP_RANGE
    if (
        isinstance(mpp, bool)
        or not isinstance(mpp, (int, float))
        or not (math.isfinite(mpp) and low <= mpp <= high)
    ):
        raise CheckpointError(f"{path}: mpp {mpp!r} must be {low:g}-{high:g} microns per pixel; {damaged}")
    patch = block["patch_size"]
    if isinstance(patch, bool) or not isinstance(patch, int) or not 1 <= patch <= 8192:
        raise CheckpointError(f"{path}: patch_size {patch!r} must be 1-8192 pixels; {damaged}")
    network = block["network"]
    depth = network.get("encoder_depth", 5) if isinstance(network, dict) else None
    if (
        not isinstance(network, dict)
        or isinstance(depth, bool)
        or not isinstance(depth, int)
        or not 1 <= depth <= 8
    ):
        raise CheckpointError(f"{path}: network {network!r} is not a valid network description; {damaged}")


def build_network(block: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the pure network described by a checkpoint's histoseg block (random weights)."""
    task = block["task"]
    config = dict(block["network"])
    if task == "segmentation":
        from histoseg.models.segmentation import build_segmentation_model

        return build_segmentation_model(encoder_weights=None, **config)
    if task == "patch_classification":
        from histoseg.models.classifiers import build_classifier

        return build_classifier(**config)
    raise CheckpointError(f"unknown histoseg task {task!r} in checkpoint; upgrade histoseg")


def load_predictor(
    path: str | os.PathLike[str], *, method: str = "atrous", tile_size: int | None = None
) -> Predictor:
    """Build a :class:`Predictor` from a histoseg checkpoint.

    Args:
        path: Checkpoint file.
        method: Patch classifiers only: dense prediction method (``atrous``,
            ``shift_and_stitch`` or ``upsample``; see :mod:`histoseg.models.fcn`).
        tile_size: Inference tile side in pixels (default: 512 for U-Nets, larger for classifiers).

    Raises:
        CheckpointError: see :func:`read_checkpoint`; weights that do not fit the network.
    """
    path = resolve_checkpoint_path(path)
    checkpoint = read_checkpoint(path)
    block = checkpoint[CHECKPOINT_KEY]
    network = build_network(block)
    state = {k[len("network.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("network.")}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the network ({str(exc).splitlines()[0][:120]}); "
            "the checkpoint is damaged or was edited; use the .ckpt written by 'histoseg fit'"
        ) from None
    return make_predictor(
        network, block, checkpoint_sha256=sha256_file(path), method=method, tile_size=tile_size
    )


def make_predictor(
    network: torch.nn.Module,
    block: dict[str, Any],
    *,
    checkpoint_sha256: str = "",
    method: str = "atrous",
    tile_size: int | None = None,
) -> Predictor:
    """Wrap a trained network and its histoseg block (see :meth:`histoseg.tasks.BaseTask.histoseg_block`).

    U-Nets tile at 512 px (a multiple of ``2**encoder_depth``) with a 1/8-tile margin; patch
    classifiers are convolutionalized (:class:`histoseg.models.fcn.DensePredictor`) with a margin of
    half a patch, inside which tile-edge pixels see padded context.
    """
    network.eval()
    classes = list(block["classes"])
    patch = int(block["patch_size"])
    metadata = {
        "task": block["task"],
        "network": block["network"],
        "histoseg_version_trained": block.get("version"),
        "seed": block.get("seed"),
    }
    if block["task"] == "segmentation":
        multiple = 2 ** int(block["network"].get("encoder_depth", 5))
        size = tile_size or max(512, patch)
        size = max(multiple, size // multiple * multiple)
        model: torch.nn.Module = network
        margin = min(64, size // 8)
    else:
        from histoseg.models.fcn import DensePredictor

        if block["network"].get("arch") == "encoder" and method == "atrous":
            method = "upsample"  # timm trunks cannot be rewritten a trous (see histoseg.models.fcn)
        model = DensePredictor(network, patch_size=patch, method=method)  # type: ignore[arg-type]
        multiple = 1
        size = tile_size or 512
        margin = patch // 2
    return Predictor(
        model=model,
        classes=classes,
        mpp=float(block["mpp"]),
        tile_size=size,
        margin=margin,
        size_multiple=multiple,
        background_class=classes.index("background") if "background" in classes else None,
        checkpoint_sha256=checkpoint_sha256,
        metadata=metadata,
    )
