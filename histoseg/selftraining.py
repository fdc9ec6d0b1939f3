"""Self-training from scribbles: the model's own superpixel pseudo-labels, mid-training.

ScribbleSup (Lin et al., CVPR 2016) alternates two steps: propagate the scribbles to
superpixels, then train the network; the trained network's predictions, pooled over
superpixels, give the next round's labels. :class:`ScribbleSelfTraining` is that loop as a
Lightning callback: after epoch ``start_epoch - 1`` (and every ``every_n_epochs`` after it) the
U-Net predicts each training slide around its scribbles, and
:meth:`histoseg.datamodules.SlideDataModule.pseudo_label_scribbles` replaces the training labels by
the scribbles plus every superpixel whose mean probability of one class reaches ``threshold``
(:func:`histoseg.labels.scribbles.superpixel_pseudo_labels`). Training then goes on, same optimiser and
schedule, on the denser labels. Validation labels are never touched.

Config (``trainer.callbacks``)::

    - class_path: histoseg.selftraining.ScribbleSelfTraining
      init_args: {start_epoch: 2, segment_um: 6.0, threshold: 0.8}

The callback makes the trainer rebuild its training dataloader every epoch
(``reload_dataloaders_every_n_epochs = 1``), so patches are drawn from the new labels.
"""

from __future__ import annotations

import logging
from functools import partial

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from histoseg.errors import ConfigError

log = logging.getLogger(__name__)


def model_probabilities(task: L.LightningModule, image: np.ndarray, size_multiple: int = 32) -> np.ndarray:
    """Class probabilities of a segmentation task's network for one image.

    Args:
        task: A task whose ``forward`` maps (N, 3, H, W) float images in [0, 1] to logits.
        image: (h, w, 3) uint8 RGB.
        size_multiple: The network's input sides must be multiples of this (reflect padding).

    Returns:
        (C, h, w) float32 softmax probabilities.
    """
    h, w = image.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(task.device)
    x = x.float() / 255.0
    pad_h, pad_w = (-h) % size_multiple, (-w) % size_multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    was_training = task.training
    task.eval()
    try:
        with torch.no_grad():
            logits = task(x)
    finally:
        task.train(was_training)
    return torch.softmax(logits.float(), dim=1)[0, :, :h, :w].cpu().numpy()


class ScribbleSelfTraining(L.Callback):
    """Replace the training scribbles by the model's superpixel pseudo-labels during training.

    Args:
        start_epoch: First epoch trained on pseudo-labels (>= 1; the epochs before it train on
            the scribbles alone). Needs ``trainer.max_epochs > start_epoch``.
        every_n_epochs: Pseudo-label again every this many epochs after ``start_epoch``
            (0 = once). Each round starts from the scribbles, not from the previous round.
        segment_um: Superpixel size in microns (6 um: about a tubular epithelial cell).
        threshold: Minimum superpixel-mean probability of the best class, in (0, 1]; doubtful
            superpixels stay unlabelled.
    """

    def __init__(
        self,
        start_epoch: int = 1,
        every_n_epochs: int = 0,
        segment_um: float = 6.0,
        threshold: float = 0.8,
    ) -> None:
        if start_epoch < 1:
            raise ConfigError(f"ScribbleSelfTraining start_epoch {start_epoch} must be >= 1")
        if every_n_epochs < 0:
            raise ConfigError(f"ScribbleSelfTraining every_n_epochs {every_n_epochs} must be >= 0 (0 = once)")
        if not segment_um > 0:
            raise ConfigError(f"ScribbleSelfTraining segment_um {segment_um} must be > 0 microns")
        if not 0 < threshold <= 1:
            raise ConfigError(f"ScribbleSelfTraining threshold {threshold} must be in (0, 1]; e.g. 0.8")
        self.start_epoch = start_epoch
        self.every_n_epochs = every_n_epochs
        self.segment_um = segment_um
        self.threshold = threshold
        self.rounds: list[tuple[int, int, int]] = []  # (epoch, scribbled px, labelled px)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Check the task and datamodule, and make the trainer reload the training data each epoch."""
        if stage != "fit":
            return
        from histoseg.tasks import SegmentationTask

        if not isinstance(pl_module, SegmentationTask):
            raise ConfigError(
                "ScribbleSelfTraining needs a dense segmentation model (histoseg.tasks.SegmentationTask); "
                "remove the callback for this task"
            )
        datamodule = getattr(trainer, "datamodule", None)
        if not hasattr(datamodule, "pseudo_label_scribbles"):
            raise ConfigError(
                "ScribbleSelfTraining needs a histoseg SlideDataModule (or subclass) with scribble labels"
            )
        max_epochs = trainer.max_epochs
        if max_epochs is not None and 0 <= max_epochs <= self.start_epoch and not trainer.fast_dev_run:
            raise ConfigError(
                f"ScribbleSelfTraining start_epoch {self.start_epoch} leaves no epoch to train on "
                f"pseudo-labels with trainer.max_epochs {max_epochs}; raise max_epochs or lower start_epoch"
            )
        if not trainer.reload_dataloaders_every_n_epochs:
            trainer.reload_dataloaders_every_n_epochs = 1

    def due(self, next_epoch: int) -> bool:
        """Whether labels are renewed before ``next_epoch`` (0-based)."""
        if next_epoch == self.start_epoch:
            return True
        later = next_epoch - self.start_epoch
        return self.every_n_epochs > 0 and later > 0 and later % self.every_n_epochs == 0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Pseudo-label the training slides when the next epoch is a self-training one."""
        next_epoch = trainer.current_epoch + 1
        if not self.due(next_epoch) or (trainer.max_epochs is not None and next_epoch >= trainer.max_epochs):
            return
        multiple = 2 ** int(getattr(pl_module, "encoder_depth", 5))
        before, after = trainer.datamodule.pseudo_label_scribbles(  # type: ignore[attr-defined]
            partial(model_probabilities, pl_module, size_multiple=multiple),
            segment_um=self.segment_um,
            threshold=self.threshold,
        )
        self.rounds.append((next_epoch, before, after))
        log.info(
            "self-training before epoch %d: %d scribbled training pixels -> %d labelled (%.1fx)",
            next_epoch,
            before,
            after,
            after / max(before, 1),
        )
