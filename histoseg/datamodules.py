"""Lightning datamodules over whole-slide images with dense, grid-point or scribble labels.

:class:`SlideDataModule` reads a slide table (see :mod:`histoseg.datasets`), puts every labelled
slide on a training grid at ``mpp`` and serves random patches for training and a fixed grid
of patches for validation/testing. Augmentation runs on the device after transfer
(:mod:`histoseg.transforms`). The Ronneberger weight map is computed per patch in the workers
(``border_w0 > 0``), with class weights computed once over all training labels.

:class:`SyntheticKidneyDataModule` is the embedded default: a :class:`SlideDataModule` whose slide
table comes from a :class:`histoseg.sources.SyntheticSlides` source (``data.synthetic.*``): a seeded
set of synthetic kidney-like slides, generated once into a cache folder. Every other option is
:class:`SlideDataModule`'s own, declared once.

``__init__`` only stores arguments; files are opened in :meth:`setup`, so every YAML config can
be parsed without its data.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from histoseg import IGNORE_INDEX, KIDNEY_CLASSES
from histoseg.datasets import (
    EpochSampler,
    GridPatchDataset,
    LabelledSlide,
    PatchOptions,
    RandomPatchDataset,
    prepare_labelled_slide,
)
from histoseg.errors import ConfigError, LabelError
from histoseg.labels.grid import GridOptions
from histoseg.labels.table import SlideRecord, read_slide_table
from histoseg.labels.weight_maps import class_frequency_weights
from histoseg.sources import SyntheticSlides, default_cache_dir
from histoseg.training_options import (
    OPTION_GROUPS,
    Augmentation,
    LabelOptions,
    LoaderOptions,
    LossWeighting,
    PatchSampling,
    as_group,
    as_plain,
)
from histoseg.transforms import augment_batch, to_float_image

log = logging.getLogger(__name__)

class SlideDataModule(L.LightningDataModule):
    """Patches from whole-slide images with dense, grid-point or scribble labels.

    Every option group is declared once in :mod:`histoseg.training_options` and passed on whole.

    Args:
        slides: Slide table CSV (columns: slide, labels, kind, split, mpp, label_offset_x,
            label_offset_y; see :mod:`histoseg.datasets`).
        synthetic: Instead of ``slides``: generated synthetic kidney slides and their table
            (:class:`histoseg.sources.SyntheticSlides`; ``predict`` then runs the validation slides).
        classes: Class names in label-index order.
        mpp: Training resolution in microns per pixel.
        labels: How labels become training labels (value maps, brush, point radius, growth).
        patches: Patch size, batch size and how patches are drawn.
        weighting: Class weights and the Ronneberger border term of the loss.
        augmentation: Flips, rotations and colour/stain jitter of training batches.
        loader: DataLoader workers and memory.
        seed: Seed of the patch draws.
        predict_slides: ``predict``: slides to run (file, folder or glob); null = the slide-table
            rows with ``split=predict``. Outputs are written by :class:`histoseg.writers.SlideWriter`.
    """

    def __init__(
        self,
        slides: str = "",
        synthetic: SyntheticSlides | None = None,
        classes: list[str] = list(KIDNEY_CLASSES),  # noqa: B006 - jsonargparse needs a literal default
        mpp: float = 1.0,
        labels: LabelOptions = LabelOptions(),  # noqa: B008 - frozen dataclasses, shown by --help
        patches: PatchSampling = PatchSampling(),  # noqa: B008
        weighting: LossWeighting = LossWeighting(),  # noqa: B008
        augmentation: Augmentation = Augmentation(),  # noqa: B008
        loader: LoaderOptions = LoaderOptions(),  # noqa: B008
        seed: int = 0,
        predict_slides: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["synthetic", *OPTION_GROUPS])
        # plain values only: checkpoints are read with weights_only=True
        self.hparams["synthetic"] = as_plain(synthetic)
        self.synthetic = None if synthetic is None else as_group(SyntheticSlides, synthetic)
        self.slides = slides
        self.classes = list(classes)
        self.mpp = mpp
        self.labels = as_group(LabelOptions, labels)
        self.patches = as_group(PatchSampling, patches)
        self.weighting = as_group(LossWeighting, weighting)
        self.augmentation = as_group(Augmentation, augmentation)
        self.loader = as_group(LoaderOptions, loader)
        for group in OPTION_GROUPS:
            self.hparams[group] = as_plain(getattr(self, group))
        self.seed = seed
        self.predict_slides = predict_slides
        self._labelled: dict[str, list[LabelledSlide]] = {}
        self.class_weights: dict[int, float] = {}
        self._generator = torch.Generator().manual_seed(seed)

    # -- configuration checks ----------------------------------------------------------------------
    def _check(self) -> None:
        loader, patches, labels, weighting = self.loader, self.patches, self.labels, self.weighting
        if loader.num_workers < 0 or loader.prefetch_factor < 1:
            raise ConfigError(
                f"data.loader.num_workers={loader.num_workers}, data.loader.prefetch_factor="
                f"{loader.prefetch_factor}: use num_workers >= 0 (0 = read in the training process) "
                "and prefetch_factor >= 1"
            )
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"data.classes must be a non-empty list of distinct names, got {self.classes}")
        if not (self.mpp > 0 and math.isfinite(self.mpp)):
            raise ConfigError(f"data.mpp must be a positive number of microns per pixel, got {self.mpp}")
        if patches.patch_size < 8:
            raise ConfigError(
                f"data.patches.patch_size={patches.patch_size} is too small; use at least 32 pixels"
            )
        if labels.grow_um < 0:
            raise ConfigError(
                f"data.labels.grow_um={labels.grow_um} must be 0 (off) or a superpixel size in microns"
            )
        unknown_grow = [c for c in labels.grow_classes or [] if c not in self.classes]
        if unknown_grow and labels.grow_um > 0:
            raise ConfigError(
                f"data.labels.grow_classes {unknown_grow} are not in data.classes {self.classes}; fix the names"
            )
        if patches.batch_size < 1 or patches.patches_per_epoch < 1:
            raise ConfigError("data.patches.batch_size and data.patches.patches_per_epoch must be at least 1")
        unknown = [c for c in weighting.border_object_classes if c not in self.classes]
        if unknown and weighting.border_w0 > 0:
            raise ConfigError(
                f"data.weighting.border_object_classes {unknown} are not in data.classes {self.classes}; "
                "fix the names"
            )

    def slide_table(self) -> str:
        """Path of the slide table: ``slides``, or the table of the ``synthetic`` source (generated once)."""
        if self.synthetic is not None:
            if self.slides:
                raise ConfigError(
                    f"data.slides={self.slides!r} and data.synthetic are both set; give one slide source"
                )
            return str(self.synthetic.table(self.classes, self.labels.brush_um))
        if not self.slides:
            raise ConfigError(
                "data.slides is not set; give a slide table CSV (see the README's 'Your own slides')"
            )
        return self.slides

    def prepare_data(self) -> None:
        """Generate the ``synthetic`` slides and their table (once; later calls reuse the cache)."""
        if self.synthetic is not None:
            self.slide_table()

    def records(self) -> list[SlideRecord]:
        """Rows of the slide table."""
        return read_slide_table(self.slide_table())

    # -- Lightning hooks ---------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load the labels of the splits ``stage`` needs, on the training grid."""
        self._check()
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}.get(
            stage or "fit", ("train", "val")
        )
        records = self.records()
        for split in needed:
            if split in self._labelled:
                continue
            rows = [r for r in records if r.split == split]
            if split == "train" and not rows:
                raise ConfigError(
                    f"{self.slide_table()}: no slide with split 'train'; mark at least one row split=train"
                )
            if split == "val" and not rows:
                log.warning("%s: no validation slides (split=val); validation is skipped", self.slide_table())
            if split == "test" and not rows:
                raise ConfigError(
                    f"{self.slide_table()}: no slide with split 'test'; mark rows split=test to run test"
                )
            grid = GridOptions.on_grid(self.labels, self.classes, self.mpp, margin_px=self.patches.patch_size)
            self._labelled[split] = [prepare_labelled_slide(r, grid) for r in rows]
        if "train" in self._labelled:
            self._count_training_labels()

    def _count_training_labels(self) -> None:
        """Per-class counts of the training labels, and the class weights derived from them."""
        counts = np.zeros(len(self.classes), dtype=np.int64)
        for item in self._labelled["train"]:
            counts += item.counts(len(self.classes))
        if counts.sum() == 0:
            raise LabelError("training labels hold no labelled pixel; training would not learn anything")
        self.train_class_counts = counts
        self.class_weights = self._class_weights(counts)

    def _class_weights(self, counts: np.ndarray) -> dict[int, float]:
        if self.weighting.class_weighting == "none":
            return {}
        weights = class_frequency_weights(counts.tolist())
        if self.weighting.class_weighting == "sqrt_inverse_frequency":
            weights = {c: math.sqrt(w) for c, w in weights.items()}
            mean = sum(weights[c] * counts[c] for c in weights) / counts.sum()
            weights = {c: w / mean for c, w in weights.items()}
        return weights

    def patch_options(self) -> PatchOptions:
        """Patch geometry and weighting shared by all splits."""
        weighting = self.weighting
        return PatchOptions(
            patch_size=self.patches.patch_size,
            mpp=self.mpp,
            object_classes=tuple(
                self.classes.index(c) for c in weighting.border_object_classes if c in self.classes
            ),
            border_w0=weighting.border_w0,
            border_sigma_px=weighting.border_sigma_um / self.mpp,
            class_weights=self.class_weights,
        )

    def _loader(self, dataset: Any, sampler: Any = None, shuffle: bool = False) -> DataLoader[Any]:
        loader = self.loader
        return DataLoader(
            dataset,
            batch_size=self.patches.batch_size,
            sampler=sampler,
            shuffle=shuffle,
            num_workers=loader.num_workers,
            prefetch_factor=loader.prefetch_factor if loader.num_workers > 0 else None,
            persistent_workers=loader.persistent_workers and loader.num_workers > 0,
            pin_memory=torch.cuda.is_available() if loader.pin_memory is None else loader.pin_memory,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        """Random patches, ``patches_per_epoch`` per epoch, fresh each epoch."""
        dataset = RandomPatchDataset(
            self._labelled["train"],
            self.patch_options(),
            num_classes=len(self.classes),
            class_balanced=self.patches.class_balanced,
            centered=self.patches.centered,
            seed=self.seed,
        )
        return self._loader(dataset, sampler=EpochSampler(self.patches.patches_per_epoch))

    def _grid_loader(self, split: str) -> DataLoader[Any]:
        slides = self._labelled.get(split, [])
        if self.patches.centered:
            dataset: Any = (
                RandomPatchDataset(
                    slides,
                    self.patch_options(),
                    num_classes=len(self.classes),
                    centered=True,
                    seed=self.seed + 1,
                )
                if slides
                else []
            )
            return self._loader(dataset, sampler=range(self.patches.val_patches) if slides else None)
        return self._loader(GridPatchDataset(slides, self.patch_options(), max_patches=self.patches.val_patches))

    def val_dataloader(self) -> DataLoader[Any]:
        """A fixed grid of patches over the validation labels."""
        return self._grid_loader("val")

    def test_dataloader(self) -> DataLoader[Any]:
        """A fixed grid of patches over the test labels."""
        return self._grid_loader("test")

    def predict_dataloader(self) -> DataLoader[Any]:
        """One slide path per item: ``predict_slides``, ``split=predict`` rows, or synthetic val slides."""
        from histoseg.io.slide import find_slides

        if self.predict_slides:
            paths = find_slides(self.predict_slides)
        elif self.synthetic is not None:
            paths = [r.slide for r in self.records() if r.split == "val"]
        else:
            paths = [r.slide for r in self.records() if r.split == "predict"]
            if not paths:
                raise ConfigError(
                    f"{self.slide_table()}: no slide with split 'predict'; add rows or set data.predict_slides"
                )
        return self._slide_loader(paths)

    def _slide_loader(self, paths: list[Path]) -> DataLoader[Any]:
        """One slide per batch; under DDP each process gets its own slides (a shard may be empty)."""
        from histoseg.datasets import SlidePathDataset, SlideShardSampler, collate_paths

        dataset = SlidePathDataset(paths)
        trainer = getattr(self, "trainer", None)
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            sampler = SlideShardSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank)
        return DataLoader(dataset, batch_size=1, sampler=sampler, collate_fn=collate_paths, num_workers=0)

    def on_after_batch_transfer(
        self, batch: dict[str, torch.Tensor], dataloader_idx: int
    ) -> dict[str, torch.Tensor]:
        """uint8 -> float [0, 1]; augment training batches on the device."""
        if not isinstance(batch, dict):  # prediction: a list of slide paths
            return batch
        batch = dict(batch)
        batch["image"] = to_float_image(batch["image"])
        trainer = getattr(self, "trainer", None)
        training = trainer is not None and trainer.training
        if training and self.augmentation.enabled:
            batch["image"], batch["mask"], batch["weight"] = augment_batch(
                batch["image"],
                batch["mask"],
                batch["weight"],
                self.augmentation.color_jitter,
                generator=self._generator,
                stain_jitter=self.augmentation.stain_jitter,
            )
        return batch


class SyntheticKidneyDataModule(SlideDataModule):
    """The embedded default: a :class:`SlideDataModule` over synthetic kidney-like slides.

    Its slide table comes from ``synthetic`` (:class:`histoseg.sources.SyntheticSlides`,
    generated once into a cache folder); every other argument is :class:`SlideDataModule`'s.

    Args:
        synthetic: The generated slides (number, size, stain, pathology, label kind).
        **kwargs: Any other :class:`SlideDataModule` argument (``data.mpp``, ``data.patches.patch_size``, ...).
    """

    def __init__(self, synthetic: SyntheticSlides = SyntheticSlides(), **kwargs: Any) -> None:  # noqa: B008
        super().__init__(synthetic=synthetic, **kwargs)


__all__ = ["SlideDataModule", "SyntheticKidneyDataModule", "default_cache_dir", "IGNORE_INDEX"]
