"""Slide inference inside Lightning's predict loop (one GPU, many GPUs, many nodes).

``histoseg predict --config CFG --ckpt_path CKPT`` runs Lightning's predict loop over the
datamodule's *prediction slides* (``data.predict_slides`` or slide-table rows with
``split=predict``). Each batch is one slide path; :class:`SlideWriter` (a
``BasePredictionWriter`` in ``trainer.callbacks``) turns it into the same outputs as
``histoseg quantify`` (:class:`histoseg.quantify.Cohort`): label map, GeoJSON, overlay and a
result file. Under DDP, :class:`histoseg.datasets.SlideShardSampler` gives every rank its own
slides (none twice; a rank with none gets an empty filler item), and rank 0 writes the merged
cohort report after all ranks are done.

Example (configs):
    trainer:
      callbacks:
        - class_path: histoseg.writers.SlideWriter
          init_args: {out: results/}
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

from histoseg.inference.options import InferenceOptions


class SlideWriter(BasePredictionWriter):
    """Writes label maps, GeoJSON, overlays and the cohort report from Lightning's predict loop.

    Args:
        out: Output folder.
        options: Inference settings (:class:`histoseg.inference.options.InferenceOptions`:
            ``tile_size``, ``overlap``, ``blend``, ``margin``, ``batch_size``, ``precision``,
            ``tta``, ...), e.g. ``--trainer.callbacks.options.tile_size 256``. Its ``device`` is
            replaced by the device Lightning runs the model on.
        mpp: Level-0 mpp override for slides without one.
        method: Patch classifiers: dense prediction method.
    """

    def __init__(
        self,
        out: str = "predictions",
        options: InferenceOptions = InferenceOptions(),  # noqa: B008 - frozen, so a shared default is safe
        mpp: float | None = None,
        method: Literal["atrous", "shift_and_stitch", "upsample"] = "atrous",
    ) -> None:
        super().__init__(write_interval="batch")
        self.out = out
        self.options = options
        self.mpp = mpp
        self.method = method
        self.cohort: Any = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Build the cohort run from the prediction slides and the model being predicted with."""
        from histoseg.inference.checkpoint import make_predictor
        from histoseg.io.files import sha256_file
        from histoseg.quantify import Cohort

        dataloader = trainer.predict_dataloaders
        assert dataloader is not None  # Lightning sets them up before this hook
        dataset = dataloader.dataset if not isinstance(dataloader, list) else dataloader[0].dataset
        sha = sha256_file(trainer.ckpt_path) if trainer.ckpt_path else ""
        task: Any = pl_module  # a histoseg task (LightningModule.__getattr__ types .network as a Tensor)
        predictor = make_predictor(
            task.network,
            task.histoseg_block(),
            checkpoint_sha256=sha,
            method=self.method,
            tile_size=self.options.tile_size,
        )
        options = self.options.replace(device=str(pl_module.device))
        self.cohort = Cohort(predictor, list(dataset.paths), self.out, options, mpp=self.mpp)
        self._index = {str(p): i for i, p in enumerate(self.cohort.paths)}

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Quantify the slides of this batch (one path per item)."""
        for path in prediction:
            if path:  # "" = the filler item of a process with no slide of its own
                self.cohort.process(self._index[str(path)])

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After every rank is done, rank 0 writes the merged report."""
        trainer.strategy.barrier("histoseg-slide-writer")
        if trainer.is_global_zero:
            self.status = self.cohort.write_report(world_size=1, wait_timeout=0.0)
