"""Lightning datamodules over whole-slide images with dense, grid-point or scribble labels.

:class:`SlideDataModule` reads a slide table (see :mod:`histoseg.datasets`), puts every labelled
slide on a training grid at ``mpp`` and serves random patches for training and a fixed grid
of patches for validation/testing. Augmentation runs on the device after transfer
(:mod:`histoseg.transforms`). The Ronneberger weight map is computed per patch in the workers
(``border_w0 > 0``), with class weights computed once over all training labels.

:class:`SyntheticKidneyDataModule` is the embedded default: it generates (once, into a cache
folder) a seeded set of synthetic kidney-like pyramidal TIFF slides with dense labels
(:mod:`histoseg.synthetic.generator`) and trains on them.

``__init__`` only stores arguments; files are opened in :meth:`setup`, so every YAML config can
be parsed without its data.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
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
    SlideRecord,
    prepare_labelled_slide,
    pseudo_label_slide,
    read_slide_table,
)
from histoseg.errors import ConfigError, LabelError
from histoseg.labels.scribbles import ScribbleMethod
from histoseg.models.losses import class_frequency_weights
from histoseg.transforms import augment_batch, to_float_image

log = logging.getLogger(__name__)

ClassWeighting = Literal["none", "inverse_frequency", "sqrt_inverse_frequency"]


def default_cache_dir() -> Path:
    """Folder for generated data: ``$HISTOSEG_CACHE`` or ``~/.cache/histoseg``."""
    return Path(os.environ.get("HISTOSEG_CACHE", Path.home() / ".cache" / "histoseg")).expanduser()


class SlideDataModule(L.LightningDataModule):
    """Patches from whole-slide images with dense, grid-point or scribble labels.

    Args:
        slides: Slide table CSV (columns: slide, labels, kind, split, mpp, label_offset_x,
            label_offset_y; see :mod:`histoseg.datasets`).
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
        stain_jitter: Strength ``sigma`` of the HED stain jitter (Tellez et al. 2018; 0 = off,
            0.05 light, 0.2 strong): each stain's optical density scaled by U(1 +- sigma) and
            shifted by U(+-sigma) (:func:`histoseg.transforms.hed_jitter`).
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
        self.save_hyperparameters()
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
        self._scribble_seeds: dict[int, np.ndarray] = {}  # id(item) -> scribbles before self-training
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
        """Path of the slide table (subclasses may generate it)."""
        if not self.slides:
            raise ConfigError(
                "data.slides is not set; give a slide table CSV (see the README's 'Your own slides')"
            )
        return self.slides

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

    def pseudo_label_scribbles(
        self,
        probabilities: Callable[[np.ndarray], np.ndarray],
        segment_um: float = 6.0,
        threshold: float = 0.8,
    ) -> tuple[int, int]:
        """Replace the training scribbles by superpixel pseudo-labels of a model (self-training).

        Every call starts again from the scribbles as first loaded (grown, if growth is on), so
        rounds do not compound their own errors. Class counts and weights are recomputed; the
        next ``train_dataloader()`` samples from the new labels.

        Args:
            probabilities: Maps an (h, w, 3) uint8 RGB image at ``mpp`` to (C, h, w) float class
                probabilities.
            segment_um: Superpixel size in microns.
            threshold: Minimum superpixel-mean probability of the best class, in (0, 1].

        Returns:
            (scribbled pixels, labelled pixels after pseudo-labelling), training-grid pixels.

        Raises:
            ConfigError: no training slide has scribbles.
        """
        items = [item for item in self._labelled.get("train", []) if item.kind == "scribbles"]
        if not items:
            raise ConfigError(
                "self-training pseudo-labels scribbles, but no training slide has kind=scribbles; "
                "remove the ScribbleSelfTraining callback or train on scribbles"
            )
        before = after = 0
        for item in items:
            seeds = self._scribble_seeds.setdefault(id(item), item.labels.copy())
            item.labels = pseudo_label_slide(
                item, seeds, probabilities, self.mpp, segment_um / self.mpp, threshold
            )
            item.class_positions = {}
            before += int((seeds != IGNORE_INDEX).sum())
            after += int((item.labels != IGNORE_INDEX).sum())
        self._count_training_labels()
        return before, after

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
        """One slide path per item: ``predict_slides``, or the table's ``split=predict`` rows."""
        from histoseg.io.slide import find_slides

        if self.predict_slides:
            paths = find_slides(self.predict_slides)
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
    """The embedded default: synthetic kidney-like slides generated once into a cache folder.

    The generator (:mod:`histoseg.synthetic.generator`) paints tubules, glomeruli, interstitium, vessels and
    glass with PAS-like colours and writes pyramidal TIFFs with their mpp and exact dense labels.
    The first ``n_val`` slides are used for validation, the rest for training.

    Args:
        root: Cache folder for the generated slides (null: ``$HISTOSEG_CACHE`` or
            ``~/.cache/histoseg``, subfolder ``synthetic-kidney``).
        n_slides: Number of slides.
        n_val: Of which validation slides.
        slide_width: Slide width in pixels at ``slide_mpp``.
        slide_height: Slide height in pixels at ``slide_mpp``.
        slide_mpp: Level-0 resolution of the generated slides.
        generator_seed: Seed of the generator.
        stain_hue_shift: Stain variation: rotation of the stain colours in degrees (domain shift).
        stain_saturation: Stain variation: saturation scale of the stain colours (1 = unchanged).
        fibrosis: Pathology setting in [0, 1]: wider interstitium, atrophic tubules.
        label_kind: Labels of the training slides: dense masks, grid points drawn every
            ``grid_spacing_um`` from them, or scribbles simulated from them (``scribble_fraction`` of
            the labelled pixels). Validation slides keep dense labels.
        grid_spacing_um: Grid-point spacing in microns.
        scribble_fraction: Fraction of labelled pixels covered by simulated scribbles.
        scribble_method: How the simulated strokes run inside each object: along its
            ``skeleton``, as ``random_walk``s, or along a ``contour`` at half its inscribed radius
            (:func:`histoseg.labels.scribbles.simulate_scribbles`).
        **See SlideDataModule for the other arguments.**
    """

    def __init__(
        self,
        root: str | None = None,
        n_slides: int = 6,
        n_val: int = 1,
        slide_width: int = 3072,
        slide_height: int = 2304,
        slide_mpp: float = 0.5,
        generator_seed: int = 0,
        stain_hue_shift: float = 0.0,
        stain_saturation: float = 1.0,
        fibrosis: float = 0.0,
        classes: list[str] = list(KIDNEY_CLASSES),  # noqa: B006
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
        label_kind: Literal["dense", "points", "scribbles"] = "dense",
        grid_spacing_um: float = 20.0,
        scribble_fraction: float = 0.03,
        scribble_method: ScribbleMethod = "skeleton",
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
        scribble_grow_um: float = 0.0,
        scribble_grow_classes: list[str] | None = None,
    ) -> None:
        super().__init__(
            slides="",
            classes=classes,
            mpp=mpp,
            patch_size=patch_size,
            batch_size=batch_size,
            patches_per_epoch=patches_per_epoch,
            val_patches=val_patches,
            class_balanced=class_balanced,
            centered=centered,
            class_weighting=class_weighting,
            border_w0=border_w0,
            border_sigma_um=border_sigma_um,
            border_object_classes=border_object_classes,
            brush_um=brush_um,
            point_radius_um=point_radius_um,
            augment=augment,
            color_jitter=color_jitter,
            stain_jitter=stain_jitter,
            num_workers=num_workers,
            prefetch_factor=prefetch_factor,
            persistent_workers=persistent_workers,
            pin_memory=pin_memory,
            seed=seed,
            predict_slides=predict_slides,
            scribble_grow_um=scribble_grow_um,
            scribble_grow_classes=scribble_grow_classes,
        )
        self.root = root
        self.n_slides = n_slides
        self.n_val = n_val
        self.slide_width = slide_width
        self.slide_height = slide_height
        self.slide_mpp = slide_mpp
        self.generator_seed = generator_seed
        self.stain_hue_shift = stain_hue_shift
        self.stain_saturation = stain_saturation
        self.fibrosis = fibrosis
        self.label_kind = label_kind
        self.grid_spacing_um = grid_spacing_um
        self.scribble_fraction = scribble_fraction
        self.scribble_method = scribble_method

    def predict_dataloader(self) -> DataLoader[Any]:
        """``predict_slides``, or by default the generated validation slides."""
        if self.predict_slides:
            return super().predict_dataloader()
        return self._slide_loader([r.slide for r in self.records() if r.split == "val"])

    def dataset_dir(self) -> Path:
        """Folder of the generated slides for these generator settings."""
        base = Path(self.root).expanduser() if self.root else default_cache_dir() / "synthetic-kidney"
        tag = (
            f"n{self.n_slides}-{self.slide_width}x{self.slide_height}-mpp{self.slide_mpp:g}-seed{self.generator_seed}"
            f"-hue{self.stain_hue_shift:g}-sat{self.stain_saturation:g}-fib{self.fibrosis:g}"
        )
        return base / tag

    def prepare_data(self) -> None:
        """Generate the slides (once; later calls reuse the cache) and the slide table."""
        self.slide_table()

    def slide_table(self) -> str:
        """Generate (or reuse) the synthetic slides and return their slide table."""
        from histoseg.synthetic.generator import StainParams, TissueParams, generate_dataset

        if self.n_val >= self.n_slides or self.n_slides < 2:
            raise ConfigError(
                f"data.n_slides={self.n_slides} and data.n_val={self.n_val}: need n_val < n_slides and n_slides >= 2"
            )
        root = self.dataset_dir()
        slides = generate_dataset(
            root,
            n_slides=self.n_slides,
            seed=self.generator_seed,
            width=self.slide_width,
            height=self.slide_height,
            mpp=self.slide_mpp,
            stain=StainParams(hue_shift=self.stain_hue_shift, saturation=self.stain_saturation),
            tissue=TissueParams(fibrosis=self.fibrosis),
        )
        # every option that changes the table is in its name, so a changed option never reuses a stale table
        tag = f"{self.label_kind}-val{self.n_val}"
        if self.label_kind == "points":
            tag += f"-grid{self.grid_spacing_um:g}um"
        elif self.label_kind == "scribbles":
            tag += f"-frac{self.scribble_fraction:g}-brush{self.brush_um:g}um"
            if self.scribble_method != "skeleton":  # the default keeps the names tables had before
                tag += f"-{self.scribble_method}"
        table = root / f"table-{tag}.csv"
        if not table.exists():
            table = self._write_table(root, slides, table, tag)
        return str(table)

    def _write_table(self, root: Path, slides: list[Any], table: Path, tag: str) -> Path:
        import csv

        from histoseg.io.files import atomic_path
        from histoseg.labels.dense import read_mask_file

        rows = []
        for i, item in enumerate(slides):
            split = "val" if i < self.n_val else "train"
            labels = Path(item.label_path)
            kind = "dense"
            if self.label_kind != "dense" and split == "train":
                mask = read_mask_file(labels)
                if self.label_kind == "points":
                    from histoseg.labels.points import grid_points_from_mask, write_points_csv

                    points = grid_points_from_mask(
                        mask, spacing_px=self.grid_spacing_um / item.mpp, ignore=(255,)
                    )
                    labels = root / f"{Path(item.image_path).stem}.{tag}.points.csv"
                    write_points_csv(points, labels, self.classes)
                else:
                    from histoseg.labels.scribbles import simulate_scribbles, write_scribbles_geojson

                    brush = max(1, round(self.brush_um / item.mpp))
                    strokes = simulate_scribbles(
                        mask,
                        fraction=self.scribble_fraction,
                        brush_px=brush,
                        seed=i,
                        method=self.scribble_method,
                    )
                    labels = root / f"{Path(item.image_path).stem}.{tag}.scribbles.geojson"
                    write_scribbles_geojson(strokes, labels, self.classes, brush_px=brush)
                kind = self.label_kind
            rows.append(
                {"slide": Path(item.image_path).name, "labels": labels.name, "kind": kind, "split": split}
            )
        with atomic_path(table) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["slide", "labels", "kind", "split"])
            writer.writeheader()
            writer.writerows(rows)
        return table


__all__ = ["SlideDataModule", "SyntheticKidneyDataModule", "default_cache_dir", "IGNORE_INDEX"]
