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

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Literal

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
from histoseg.labels.table import SlideRecord, read_slide_table
from histoseg.labels.weight_maps import class_frequency_weights
from histoseg.sources import SyntheticSlides, default_cache_dir
from histoseg.transforms import augment_batch, to_float_image

log = logging.getLogger(__name__)

ClassWeighting = Literal["none", "inverse_frequency", "sqrt_inverse_frequency"]


class SlideDataModule(L.LightningDataModule):
    """Patches from whole-slide images with dense, grid-point or scribble labels.

    Args:
        slides: Slide table CSV (columns: slide, labels, kind, split, mpp, label_offset_x,
            label_offset_y; see :mod:`histoseg.datasets`).
        synthetic: Instead of ``slides``: generated synthetic kidney slides and their table
            (:class:`histoseg.sources.SyntheticSlides`; ``predict`` then runs the validation slides).
        classes: Class names in label-index order.
        value_map: Dense masks: ``{raw value: class name | "ignore"}``; null = values are class
            indices (255 = unlabelled).
        white_value_map: Dense masks: ``{raw value: class name}`` applied to white (glass/lumen)
            pixels of those values (tissue rule in :mod:`histoseg.io.tissue`).
        mpp: Training resolution in microns per pixel.
        patch_size: Patch side in pixels at ``mpp`` (U-Nets need a multiple of 32).
        batch_size: Patches per batch.
        patches_per_epoch: Random training patches per epoch.
        val_patches: Maximum validation (and test) patches, a fixed grid over labelled extents.
        class_balanced: Draw training patch centres uniformly over classes.
        centered: Put the drawn labelled pixel at the patch centre (patch classification).
        class_weighting: ``w_c`` of the loss: none, inverse_frequency or sqrt_inverse_frequency
            (mean 1 over training pixels).
        border_w0: Amplitude ``w0`` of the Ronneberger border term (0 = off; paper: 10). Applies
            to dense labels; scribbles and points have no object boundaries and get class weights only.
        border_sigma_um: Width ``sigma`` of the border term in microns (5 px at 0.5 um/px = 2.5 um).
        border_object_classes: Classes whose connected components are objects of the border term.
        brush_um: Scribbles: brush width in microns.
        point_radius_um: Grid points: radius of the labelled disc around each point (0 = 1 pixel).
        augment: Random flips / 90-degree rotations / colour jitter on training batches.
        color_jitter: Strength of the colour jitter.
        stain_jitter: Experimental: strength ``sigma`` of the HED stain jitter (Tellez et al. 2018;
            0 = off, 0.05 light, 0.2 strong): each stain's optical density scaled by U(1 +- sigma)
            and shifted by U(+-sigma) (:func:`histoseg.transforms.hed_jitter`). Kept for slides from
            several labs: on the single-lab FLASH tiles it changed nothing beyond the seed spread.
        num_workers: DataLoader worker processes reading patches and computing weight maps.
        prefetch_factor: Batches each worker prepares ahead (only with ``num_workers > 0``).
        persistent_workers: Keep the workers (and their open slides) between epochs instead of
            starting them again (only with ``num_workers > 0``).
        pin_memory: Page-locked batches for faster, non-blocking copies to a GPU; ``None`` = on
            when CUDA is available.
        seed: Seed of the patch draws.
        predict_slides: ``predict``: slides to run (file, folder or glob); null = the slide-table
            rows with ``split=predict``. Outputs are written by :class:`histoseg.writers.SlideWriter`.
        scribble_colours: Colour-coded scribble images (kind=scribbles rows with a PNG/TIFF of the
            slide's level-0 size): ``{class name: [r, g, b]}``; white, black and transparent pixels
            are unlabelled.
        scribble_grow_um: Scribbles: grow each stroke's class to the colour superpixels (SLIC,
            about this many microns across) that it alone touches, before training (ScribbleSup-style
            label propagation); 0 = train on the strokes only.
        scribble_grow_classes: Classes whose strokes grow; null = every class. (Grown interstitium
            labels are the least accurate, since the thin interstitium shares superpixels with
            tubule membranes, but leaving it out unbalanced the labels and lowered its Dice on FLASH;
            see the README's benchmarks.)
    """

    def __init__(
        self,
        slides: str = "",
        synthetic: SyntheticSlides | None = None,
        classes: list[str] = list(KIDNEY_CLASSES),  # noqa: B006 - jsonargparse needs a literal default
        value_map: dict[int, str] | None = None,
        white_value_map: dict[int, str] | None = None,
        mpp: float = 1.0,
        patch_size: int = 256,
        batch_size: int = 8,
        patches_per_epoch: int = 256,
        val_patches: int = 64,
        class_balanced: bool = False,
        centered: bool = False,
        class_weighting: ClassWeighting = "none",
        border_w0: float = 0.0,
        border_sigma_um: float = 2.5,
        border_object_classes: list[str] = ["tubules", "glomeruli"],  # noqa: B006
        brush_um: float = 2.0,
        point_radius_um: float = 0.0,
        augment: bool = True,
        color_jitter: float = 0.05,
        stain_jitter: float = 0.0,
        num_workers: int = 0,
        prefetch_factor: int = 2,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        seed: int = 0,
        predict_slides: str | None = None,
        scribble_colours: dict[str, list[int]] | None = None,
        scribble_grow_um: float = 0.0,
        scribble_grow_classes: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["synthetic"])
        # plain values only: checkpoints are read with weights_only=True
        self.hparams["synthetic"] = None if synthetic is None else dataclasses.asdict(synthetic)
        self.synthetic = synthetic
        self.scribble_grow_um = scribble_grow_um
        self.scribble_grow_classes = None if scribble_grow_classes is None else list(scribble_grow_classes)
        self.predict_slides = predict_slides
        self.scribble_colours = scribble_colours
        self.slides = slides
        self.classes = list(classes)
        self.value_map = value_map
        self.white_value_map = white_value_map
        self.mpp = mpp
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.patches_per_epoch = patches_per_epoch
        self.val_patches = val_patches
        self.class_balanced = class_balanced
        self.centered = centered
        self.class_weighting = class_weighting
        self.border_w0 = border_w0
        self.border_sigma_um = border_sigma_um
        self.border_object_classes = list(border_object_classes)
        self.brush_um = brush_um
        self.point_radius_um = point_radius_um
        self.augment = augment
        self.color_jitter = color_jitter
        self.stain_jitter = stain_jitter
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self._labelled: dict[str, list[LabelledSlide]] = {}
        self.class_weights: dict[int, float] = {}
        self._generator = torch.Generator().manual_seed(seed)

    # -- configuration checks ----------------------------------------------------------------------
    def _check(self) -> None:
        if self.num_workers < 0 or getattr(self, "prefetch_factor", 2) < 1:
            raise ConfigError(
                f"data.num_workers={self.num_workers}, data.prefetch_factor={self.prefetch_factor}: "
                "use num_workers >= 0 (0 = read in the training process) and prefetch_factor >= 1"
            )
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"data.classes must be a non-empty list of distinct names, got {self.classes}")
        if not (self.mpp > 0 and math.isfinite(self.mpp)):
            raise ConfigError(f"data.mpp must be a positive number of microns per pixel, got {self.mpp}")
        if self.patch_size < 8:
            raise ConfigError(f"data.patch_size={self.patch_size} is too small; use at least 32 pixels")
        if getattr(self, "scribble_grow_um", 0.0) < 0:
            raise ConfigError(
                f"data.scribble_grow_um={self.scribble_grow_um} must be 0 (off) or a superpixel size in microns"
            )
        unknown_grow = [
            c for c in getattr(self, "scribble_grow_classes", None) or [] if c not in self.classes
        ]
        if unknown_grow and getattr(self, "scribble_grow_um", 0.0) > 0:
            raise ConfigError(
                f"data.scribble_grow_classes {unknown_grow} are not in data.classes {self.classes}; fix the names"
            )
        if self.batch_size < 1 or self.patches_per_epoch < 1:
            raise ConfigError("data.batch_size and data.patches_per_epoch must be at least 1")
        unknown = [c for c in self.border_object_classes if c not in self.classes]
        if unknown and self.border_w0 > 0:
            raise ConfigError(
                f"data.border_object_classes {unknown} are not in data.classes {self.classes}; fix the names"
            )

    def slide_table(self) -> str:
        """Path of the slide table: ``slides``, or the table of the ``synthetic`` source (generated once)."""
        if self.synthetic is not None:
            if self.slides:
                raise ConfigError(
                    f"data.slides={self.slides!r} and data.synthetic are both set; give one slide source"
                )
            return str(self.synthetic.table(self.classes, self.brush_um))
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
            self._labelled[split] = [
                prepare_labelled_slide(
                    r,
                    self.classes,
                    self.mpp,
                    value_map=self.value_map,
                    white_value_map=self.white_value_map,
                    brush_um=self.brush_um,
                    point_radius_um=self.point_radius_um,
                    margin_px=self.patch_size,
                    scribble_colours=getattr(self, "scribble_colours", None),
                    grow_um=getattr(self, "scribble_grow_um", 0.0),
                    grow_classes=self._grow_class_indices(),
                )
                for r in rows
            ]
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

    def _grow_class_indices(self) -> list[int] | None:
        names = getattr(self, "scribble_grow_classes", None)
        return None if names is None else [self.classes.index(c) for c in names if c in self.classes]

    def _class_weights(self, counts: np.ndarray) -> dict[int, float]:
        if self.class_weighting == "none":
            return {}
        weights = class_frequency_weights(counts.tolist())
        if self.class_weighting == "sqrt_inverse_frequency":
            weights = {c: math.sqrt(w) for c, w in weights.items()}
            mean = sum(weights[c] * counts[c] for c in weights) / counts.sum()
            weights = {c: w / mean for c, w in weights.items()}
        return weights

    def patch_options(self) -> PatchOptions:
        """Patch geometry and weighting shared by all splits."""
        return PatchOptions(
            patch_size=self.patch_size,
            mpp=self.mpp,
            object_classes=tuple(
                self.classes.index(c) for c in self.border_object_classes if c in self.classes
            ),
            border_w0=self.border_w0,
            border_sigma_px=self.border_sigma_um / self.mpp,
            class_weights=self.class_weights,
        )

    def _loader(self, dataset: Any, sampler: Any = None, shuffle: bool = False) -> DataLoader[Any]:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=shuffle,
            num_workers=self.num_workers,
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            pin_memory=torch.cuda.is_available() if self.pin_memory is None else self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        """Random patches, ``patches_per_epoch`` per epoch, fresh each epoch."""
        dataset = RandomPatchDataset(
            self._labelled["train"],
            self.patch_options(),
            num_classes=len(self.classes),
            class_balanced=self.class_balanced,
            centered=self.centered,
            seed=self.seed,
        )
        return self._loader(dataset, sampler=EpochSampler(self.patches_per_epoch))

    def _grid_loader(self, split: str) -> DataLoader[Any]:
        slides = self._labelled.get(split, [])
        if self.centered:
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
            return self._loader(dataset, sampler=range(self.val_patches) if slides else None)
        return self._loader(GridPatchDataset(slides, self.patch_options(), max_patches=self.val_patches))

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
        if training and self.augment:
            batch["image"], batch["mask"], batch["weight"] = augment_batch(
                batch["image"],
                batch["mask"],
                batch["weight"],
                self.color_jitter,
                generator=self._generator,
                stain_jitter=self.stain_jitter,
            )
        return batch


class SyntheticKidneyDataModule(SlideDataModule):
    """The embedded default: a :class:`SlideDataModule` over synthetic kidney-like slides.

    Its slide table comes from ``synthetic`` (:class:`histoseg.sources.SyntheticSlides`,
    generated once into a cache folder); every other argument is :class:`SlideDataModule`'s.

    Args:
        synthetic: The generated slides (number, size, stain, pathology, label kind).
        **kwargs: Any other :class:`SlideDataModule` argument (``data.mpp``, ``data.patch_size``, ...).
    """

    def __init__(self, synthetic: SyntheticSlides = SyntheticSlides(), **kwargs: Any) -> None:  # noqa: B008
        super().__init__(synthetic=synthetic, **kwargs)


__all__ = ["SlideDataModule", "SyntheticKidneyDataModule", "default_cache_dir", "IGNORE_INDEX"]
