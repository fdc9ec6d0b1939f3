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

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from histoseg.errors import CheckpointError
from histoseg.inference.predictor import Predictor
from histoseg.inference.task_kinds import TASK_KINDS
from histoseg.io.files import sha256_file

CHECKPOINT_KEY = "histoseg"
TASKS = tuple(TASK_KINDS)
"""Task kinds a checkpoint's histoseg block may name (``BaseTask.task_name`` of the tasks; the keys of
:data:`histoseg.inference.task_kinds.TASK_KINDS`)."""


@dataclass(frozen=True)
class ModelSpec:
    """What a model built from a config expects of a checkpoint (``BaseTask.checkpoint_spec()``).

    Attributes:
        task: Task kind (one of :data:`TASKS`).
        classes: Class names in label-index order.
        mpp: Training resolution in microns per pixel.
        network: Arguments that rebuild the network (``BaseTask.network_config()``).
    """

    task: str
    classes: tuple[str, ...]
    mpp: float
    network: dict[str, Any] = field(default_factory=dict)


def check_compatible(
    path: str | os.PathLike[str],
    block: dict[str, Any],
    expected: ModelSpec | None = None,
    *,
    new_head: bool = False,
    fix: str = "use the config the checkpoint was trained with",
) -> list[str]:
    """The one checkpoint-compatibility check: of the block itself, and against a model.

    Used by ``fit``/``validate``/``test``/``predict --ckpt_path``, by fine-tuning
    (``model.init_checkpoint``, ``new_head=True``) and by ``quantify`` (:func:`load_predictor`,
    no ``expected``).

    Always checked (every reader of a checkpoint, :func:`read_checkpoint`, runs these rules): a known
    task kind, 2 to 255 distinct class names, a plausible mpp (:data:`histoseg.io.slide.MPP_RANGE`),
    a patch size of 1-8192 pixels, and network arguments (encoder depth 1-8) for as many classes.
    Against ``expected``: the same task, the same network arguments (but for ``num_classes`` when
    ``new_head``) and the same classes (other classes are allowed with ``new_head``: the head is
    then re-initialised).

    Args:
        path: The checkpoint file (named in messages).
        block: Its histoseg block (:func:`read_checkpoint` checked the keys exist).
        expected: The model the checkpoint is for, or None.
        new_head: Fine-tuning: other classes are fine (their head is re-initialised).
        fix: The advice that ends a mismatch message.

    Returns:
        Notes to log as warnings (other classes with ``new_head``; another training mpp).

    Raises:
        CheckpointError: a damaged block, or a checkpoint of another model.
    """
    _check_block(path, block)
    task, classes, network, mpp = block["task"], block["classes"], block["network"], float(block["mpp"])
    if expected is None:
        return []
    classes = list(classes)
    if task != expected.task or (classes != list(expected.classes) and not new_head):
        raise CheckpointError(
            f"{path}: a {task} checkpoint for classes {classes} does not fit this {expected.task} model "
            f"for classes {list(expected.classes)}; {fix}"
        )
    ignore = {"num_classes"} if new_head else set()
    ours = {k: v for k, v in expected.network.items() if k not in ignore}
    if {k: v for k, v in network.items() if k not in ignore} != ours:
        raise CheckpointError(
            f"{path}: network {network} differs from this config's {expected.network}; {fix}"
        )
    notes = []
    if classes != list(expected.classes):
        notes.append(
            f"{path} has classes {classes}, this model {list(expected.classes)}: the head is re-initialised"
        )
    if abs(mpp - expected.mpp) > 1e-6 * expected.mpp:
        notes.append(f"{path} was trained at {mpp:g} um/px, this run uses {expected.mpp:g} um/px")
    return notes


def load_network_weights(
    network: torch.nn.Module,
    checkpoint: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    skip_prefixes: tuple[str, ...] = (),
) -> None:
    """Copy a checkpoint's ``network.*`` weights into ``network``, all of them but ``skip_prefixes``.

    Raises:
        CheckpointError: the weights do not fit the network (missing, unexpected or misshapen).
    """
    state = {k[len("network.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("network.")}
    if skip_prefixes:
        state = {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
    try:
        missing, unexpected = network.load_state_dict(state, strict=not skip_prefixes)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the network ({str(exc).splitlines()[0][:120]})"
        ) from None
    missing = [k for k in missing if not k.startswith(skip_prefixes)] if skip_prefixes else missing
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the network (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


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
    check_compatible(path, block)
    return checkpoint


def _valid_input(geometry: object) -> bool:
    """The block's ``input`` (a fixed-size encoder's geometry) is absent or gives size and multiple in pixels."""
    if geometry is None:
        return True
    if not isinstance(geometry, dict):
        return False
    size, multiple = geometry.get("size"), geometry.get("multiple")
    return (size is None or (type(size) is int and 1 <= size <= 8192)) and (
        type(multiple) is int and 1 <= multiple <= 8192
    )


def _check_block(path: str | os.PathLike[str], block: dict[str, Any]) -> None:
    """The block's own facts (task, classes, mpp, patch size, network) are usable.

    The rules of :func:`check_compatible` (which every reader runs).

    Raises:
        CheckpointError: naming the bad entry.
    """
    from histoseg.io.slide import MPP_RANGE

    task, classes, mpp = block["task"], block["classes"], block["mpp"]
    patch, network = block["patch_size"], block["network"]
    if task not in TASKS:
        raise CheckpointError(f"{path}: unknown histoseg task {task!r} in checkpoint; upgrade histoseg")
    low, high = MPP_RANGE
    depth = network.get("encoder_depth", 5) if isinstance(network, dict) else None
    if (
        not isinstance(classes, (list, tuple))
        or not 2 <= len(classes) <= 255
        or not all(isinstance(c, str) and c.strip() for c in classes)
        or len(set(classes)) != len(classes)
    ):
        problem = f"classes {classes!r} must be 2 to 255 distinct names"
    elif (
        isinstance(mpp, bool)
        or not isinstance(mpp, (int, float))
        or not (math.isfinite(mpp) and low <= mpp <= high)
    ):
        problem = f"mpp {mpp!r} must be {low:g}-{high:g} microns per pixel"
    elif isinstance(patch, bool) or not isinstance(patch, int) or not 1 <= patch <= 8192:
        problem = f"patch_size {patch!r} must be 1-8192 pixels"
    elif not _valid_input(block.get("input")):
        problem = f"input {block.get('input')!r} must give the input size and multiple in pixels"
    elif (
        not isinstance(network, dict)
        or isinstance(depth, bool)
        or not isinstance(depth, int)
        or not 1 <= depth <= 8
    ):
        problem = f"network {network!r} is not a valid network description"
    elif network.get("num_classes") != len(classes):
        count = network.get("num_classes")
        problem = f"network {network!r} is for {count} classes, not the {len(classes)} of {classes!r}"
    else:
        return
    raise CheckpointError(
        f"{path}: histoseg block is inconsistent ({problem}); "
        "the checkpoint is damaged or was edited; use the .ckpt written by 'histoseg fit'"
    )


def build_network(block: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the pure network described by a checkpoint's histoseg block (random weights)."""
    return TASK_KINDS[block["task"]].build_network(dict(block["network"]))


def load_predictor(
    path: str | os.PathLike[str],
    *,
    method: str = "atrous",
    tile_size: int | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> Predictor:
    """Build a :class:`Predictor` from a histoseg checkpoint.

    Args:
        path: Checkpoint file.
        method: Patch classifiers only: dense prediction method (``atrous``,
            ``shift_and_stitch`` or ``upsample``; see :mod:`histoseg.models.dense`).
        tile_size: Inference tile side in pixels (default: 512 for U-Nets, larger for classifiers).
        checkpoint: The checkpoint dictionary of ``path`` when the caller has already read it
            (:func:`read_checkpoint`), so it is not loaded twice.

    Raises:
        CheckpointError: see :func:`read_checkpoint` and :func:`check_compatible`; weights that do
            not fit the network.
    """
    path = resolve_checkpoint_path(path)
    if checkpoint is None:
        checkpoint = read_checkpoint(path)  # runs check_compatible
    else:
        check_compatible(path, checkpoint[CHECKPOINT_KEY])
    block = checkpoint[CHECKPOINT_KEY]
    network = build_network(block)
    load_network_weights(network, checkpoint, path)
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

    The task kind's entry in :data:`histoseg.inference.task_kinds.TASK_KINDS` gives the module and
    its tiles: U-Nets tile at 512 px (a multiple of ``2**encoder_depth``) with a 1/8-tile margin; a
    network with a fixed input size (a ViT, the block's ``input.size``) tiles at exactly that size, a
    dynamic-size ViT at a multiple of ``input.multiple`` (twice its patch size); patch
    classifiers are convolutionalized (:class:`histoseg.models.dense.DensePredictor`) with a margin of
    half a patch, inside which tile-edge pixels see padded context.
    """
    network.eval()
    classes = list(block["classes"])
    metadata = {
        "task": block["task"],
        "network": block["network"],
        "histoseg_version_trained": block.get("version"),
        "seed": block.get("seed"),
    }
    tiling = TASK_KINDS[block["task"]].tiling(network, block, method, tile_size)
    return Predictor(
        model=tiling.model,
        classes=classes,
        mpp=float(block["mpp"]),
        tile_size=tiling.tile_size,
        margin=tiling.margin,
        size_multiple=tiling.size_multiple,
        input_size=tiling.input_size,
        background_class=classes.index("background") if "background" in classes else None,
        checkpoint_sha256=checkpoint_sha256,
        metadata=metadata,
    )
