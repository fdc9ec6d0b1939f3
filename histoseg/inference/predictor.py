"""What slide inference needs from a trained model, independent of how it was trained.

A :class:`Predictor` bundles a pure ``nn.Module`` with the facts stored in its checkpoint
(classes, resolution, tile geometry), so :mod:`histoseg.inference.predict` can run a U-Net, a
convolutionalized patch classifier or a test oracle the same way.
:func:`histoseg.inference.checkpoint.load_predictor` builds one from a checkpoint file.

Example:
    >>> import torch
    >>> from histoseg.inference.predictor import Predictor
    >>> model = torch.nn.Conv2d(3, 5, 1)
    >>> p = Predictor(model=model, classes=["background", "interstitium", "tubules", "glomeruli", "other"], mpp=1.0)
    >>> p.num_classes
    5
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from histoseg.inference.task_kinds import TASK_KINDS


@dataclass
class Predictor:
    """A model ready for dense prediction.

    Attributes:
        model: Maps float32 images (N, 3, H, W) in [0, 1] to logits (N, C, H, W) of the same
            H, W (normalisation is inside the model). Must accept any H, W that is a multiple of
            ``size_multiple``.
        classes: Class names, index order of the logits' channel axis.
        mpp: Resolution (microns per pixel) the model was trained at and must be run at.
        tile_size: Suggested inference tile side in pixels (a multiple of ``size_multiple``).
        margin: Pixels cropped or down-weighted at each tile edge (receptive-field half-width).
        size_multiple: Tile sides must be multiples of this (32 for smp U-Nets, 1 for FCNs).
        input_size: The only tile side the model accepts (a ViT built for a fixed input), or None.
        background_class: Index of the glass/background class, or None.
        checkpoint_sha256: SHA-256 of the checkpoint file ("" when not from a file).
        metadata: Anything else worth recording in reports (task, encoder, seed...).
    """

    model: nn.Module
    classes: list[str]
    mpp: float
    tile_size: int = 512
    margin: int = 32
    size_multiple: int = 32
    input_size: int | None = None
    background_class: int | None = 0
    checkpoint_sha256: str = ""
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def default_blend(self) -> Literal["crop", "gaussian"]:
        """How tiles are merged by default.

        The task kind's (:data:`histoseg.inference.task_kinds.TASK_KINDS`): centre crops for patch
        classifiers (exact: their tile edges see padded context), Gaussian-weighted logits for
        segmentation networks and for models of no known kind.
        """
        kind = TASK_KINDS.get(str(self.metadata.get("task")))
        return kind.blend if kind is not None else "gaussian"

    @property
    def num_classes(self) -> int:
        """Number of classes (logit channels)."""
        return len(self.classes)
