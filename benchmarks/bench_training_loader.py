"""Does the training input pipeline keep up? A training step fed by the real slide loader vs the same step on cached tensors.

Model, data and batch shapes are those of ``configs/kidney.yaml`` (U-Net with an
EfficientNet-Lite0 encoder, random weights, channels-last; 8 patches of 256^2 at 1 um/px from the
generated synthetic kidney slides, class-balanced draws, border weight maps). A step is: wait for
the batch, uint8 -> float, batch augmentation (flips, rotations, colour jitter), forward, the
weighted loss, backward, AdamW step, exactly as ``fit`` runs it.

- *cached*: ``--steps`` batches drawn from the loader beforehand, then the steps are timed on them;
- *loader*: the same number of steps timed while the datamodule's DataLoader (``num_workers``,
  ``prefetch_factor``, persistent workers) produces the batches.

ratio = loader time / cached time (target <= 1.1), for each loader setting in ``--settings``.

Usage::

    python benchmarks/bench_training_loader.py [--steps 12] [--settings 0:2 2:2 2:4]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from histoseg.datamodules import SyntheticKidneyDataModule
from histoseg.sources import SyntheticSlides
from histoseg.tasks import SegmentationTask
from histoseg.training_options import OPTION_GROUPS
from histoseg.transforms import augment_batch, to_float_image

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "kidney.yaml"


def build(workers: int, prefetch: int) -> tuple[SyntheticKidneyDataModule, SegmentationTask]:
    config = yaml.safe_load(CONFIG.read_text())
    data_args = dict(config["data"]["init_args"])
    data_args["synthetic"] = SyntheticSlides(**data_args["synthetic"])
    for group, kind in OPTION_GROUPS.items():
        data_args[group] = kind(**data_args.get(group, {}))
    data_args["loader"] = dataclasses.replace(data_args["loader"], num_workers=workers, prefetch_factor=prefetch)
    model_args = dict(config["model"]["init_args"], encoder_weights=None)
    dm = SyntheticKidneyDataModule(**data_args)
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    task = SegmentationTask(classes=dm.classes, mpp=dm.mpp, patch_size=dm.patches.patch_size, **model_args)
    return dm, task


class Stepper:
    """One training step, as ``fit`` does it (augmentation on the device, then the loss)."""

    def __init__(self, dm: SyntheticKidneyDataModule, task: SegmentationTask) -> None:
        self.dm, self.task = dm, task
        task.train()
        self.optimizer = torch.optim.AdamW(task.parameters(), lr=1e-3)
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, batch: dict[str, Any]) -> None:
        batch = dict(batch)
        batch["image"] = to_float_image(batch["image"])
        batch["image"], batch["mask"], batch["weight"] = augment_batch(
            batch["image"], batch["mask"], batch["weight"], self.dm.augmentation.color_jitter,
            generator=self.generator, stain_jitter=self.dm.augmentation.stain_jitter,
        )  # fmt: skip
        loss = self.task.compute_loss(self.task(batch["image"]), batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def timed_steps(step: Stepper, batches: Any, steps: int) -> float:
    """Seconds for ``steps`` steps, each including the wait for its batch."""
    iterator = iter(batches)
    step(next(iterator))  # warm-up (worker start, allocator, kernels)
    start = time.perf_counter()
    for batch in itertools.islice(iterator, steps):
        step(batch)
    return time.perf_counter() - start


def measure(workers: int, prefetch: int, steps: int) -> tuple[float, float, float]:
    """(cached seconds, loader seconds, loader-only seconds for the same batches) for one setting."""
    dm, task = build(workers, prefetch)
    loader = dm.train_dataloader()
    if steps + 1 > len(loader):
        raise SystemExit(f"--steps {steps}: at most {len(loader) - 1} (one epoch of the kidney.yaml data)")
    iterator = iter(loader)
    start = time.perf_counter()
    cached = list(itertools.islice(iterator, steps + 1))
    load_only = (time.perf_counter() - start) * steps / (steps + 1)
    del iterator  # nothing read in the background while the cached arm runs
    step = Stepper(dm, task)
    cached_s = timed_steps(step, cached, steps)
    loader_s = timed_steps(step, loader, steps)
    return cached_s, loader_s, load_only


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=12, help="timed steps per arm (after one warm-up step)")
    parser.add_argument(
        "--settings", nargs="+", default=["0:2", "2:2", "2:4"], help="num_workers:prefetch_factor pairs"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import os

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; configs/kidney.yaml model and data, {args.steps} steps per arm"
    )
    for setting in args.settings:
        workers, prefetch = (int(v) for v in setting.split(":"))
        cached_s, loader_s, load_only = measure(workers, prefetch, args.steps)
        print(
            f"num_workers={workers} prefetch_factor={prefetch}: cached {cached_s / args.steps:.3f} s/step, "
            f"loader {loader_s / args.steps:.3f} s/step -> ratio {loader_s / cached_s:.3f} (target <= 1.1); "
            f"batches alone {load_only / args.steps:.3f} s/batch",
            flush=True,
        )


if __name__ == "__main__":
    main()
