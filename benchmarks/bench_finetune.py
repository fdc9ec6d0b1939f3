"""Domain shift on the embedded synthetic data: fine-tune a trained kidney U-Net on another stain and
pathology from simulated scribbles, and measure Dice on the new setting before and after.

Source: a checkpoint trained on the default synthetic setting (``configs/kidney.yaml``; the newest
``runs/kidney/**/last.ckpt`` by default). Target: hue rotated 25 degrees, saturation x1.3,
fibrosis 0.6 (wider interstitium, atrophic tubules), labelled by scribbles simulated on the
training slides (``--fraction`` of the labelled pixels); scored on a dense validation slide of
the target setting. Prints per-class Dice before and after, the interstitial-fraction error,
the scribbled pixel fraction actually used and the CPU time of the fine-tuning.

Usage:
    python benchmarks/bench_finetune.py [--source 'runs/kidney/**/last.ckpt'] [--steps 120]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import lightning as L
import numpy as np

from histoseg.datamodules import SyntheticKidneyDataModule
from histoseg.training_options import group_options
from histoseg.sources import SyntheticSlides
from histoseg.tasks import SegmentationTask

SCORED = ["background", "interstitium", "tubules", "glomeruli", "other"]


def target(args: argparse.Namespace, label_kind: str) -> SyntheticKidneyDataModule:
    return SyntheticKidneyDataModule(**group_options(
        synthetic=SyntheticSlides(
            n_slides=4,
            n_val=1,
            seed=100,
            stain_hue_shift=25.0,
            stain_saturation=1.3,
            fibrosis=0.6,
            label_kind=label_kind,  # type: ignore[arg-type]
            scribble_fraction=args.fraction,
        ),
        brush_um=args.brush_um,
        mpp=1.0,
        patch_size=256,
        batch_size=8,
        patches_per_epoch=args.steps * 8,
        val_patches=48,
        class_balanced=True,
        num_workers=0,
    ))


def validate(task: SegmentationTask, dm: SyntheticKidneyDataModule) -> dict[str, float]:
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    metrics = trainer.validate(task, dm, verbose=False)[0]
    return {c: metrics.get(f"val_dice_{c}", float("nan")) for c in SCORED} | {"macro": metrics["val_dice"]}


def interstitial_error(task: SegmentationTask, dm: SyntheticKidneyDataModule) -> float:
    """Interstitial fraction of the prediction minus the truth, over the validation patches (pp)."""
    import torch

    counts_ref = np.zeros(5)
    counts_pred = np.zeros(5)
    task.eval()
    with torch.inference_mode():
        for batch in dm.val_dataloader():
            logits = task(batch["image"].float() / 255)
            pred = logits.argmax(1)
            keep = batch["mask"] != 255
            counts_ref += np.bincount(batch["mask"][keep].numpy(), minlength=5)[:5]
            counts_pred += np.bincount(pred[keep].numpy(), minlength=5)[:5]

    def fraction(c: np.ndarray) -> float:
        return c[1] / (c[1] + c[2] + c[3])

    return 100 * (fraction(counts_pred) - fraction(counts_ref))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default="runs/kidney/**/last.ckpt")
    parser.add_argument("--steps", type=int, default=120, help="fine-tuning steps (batches of 8 x 256^2)")
    parser.add_argument("--fraction", type=float, default=0.03, help="scribbled fraction of labelled pixels")
    parser.add_argument("--brush-um", type=float, default=3.0)
    parser.add_argument("--regularizer", default="crf", choices=["none", "entropy", "crf"])
    parser.add_argument("--lr", type=float, default=5e-4)
    args = parser.parse_args()
    from histoseg.inference.checkpoint import read_checkpoint, resolve_checkpoint_path

    source = resolve_checkpoint_path(args.source)
    network = read_checkpoint(source)["histoseg"]["network"]
    common = dict(
        encoder=network["encoder"],
        encoder_depth=network["encoder_depth"],
        decoder_channels=network["decoder_channels"],
        mpp=1.0,
        patch_size=256,
    )
    dense = target(args, "dense")
    dense.setup("validate")
    scribbles = target(args, "scribbles")
    scribbles.setup("fit")
    labelled = sum(int((s.labels != 255).sum()) for s in scribbles._labelled["train"])
    dense_train = target(args, "dense")
    dense_train.setup("fit")
    total = sum(int((s.labels != 255).sum()) for s in dense_train._labelled["train"])
    print(f"source checkpoint: {source}")
    print(
        f"scribbles cover {labelled} of {total} labelled training pixels at 1 um/px ({100 * labelled / total:.2f} %)"
    )

    before_task = SegmentationTask(init_checkpoint=str(source), **common)
    before = validate(before_task, dense)
    before_if = interstitial_error(before_task, dense)

    task = SegmentationTask(
        init_checkpoint=str(source),
        regularizer=args.regularizer,
        regularizer_weight=0.1,
        lr=args.lr,
        channels_last=True,
        **common,
    )
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    L.seed_everything(0, verbose=False)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(task, scribbles)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = validate(task, dense)
    after_if = interstitial_error(task, dense)
    print(
        f"fine-tuning: {args.steps} steps x 8 x 256^2 px, regularizer={args.regularizer}: "
        f"{wall:.0f} s wall, {cpu:.0f} s CPU"
    )
    print("Dice on the target setting (dense validation slide):")
    for name in [*SCORED, "macro"]:
        print(f"  {name:13s} before {before[name]:.3f}  after {after[name]:.3f}")
    print(f"interstitial fraction error: before {before_if:+.1f} pp, after {after_if:+.1f} pp")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
