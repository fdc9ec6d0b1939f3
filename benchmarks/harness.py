"""The benchmarks' shared harness: data, models and scores, the scores from histoseg itself.

Every benchmark script imports what it shares from here (``import harness``: a script's own folder
is on ``sys.path`` when it runs), never from another benchmark script:

- **data**: the six FLASH mouse-kidney PAS tiles (Bouteldja et al., JASN 2021; AGPL-3.0, read from
  ../shared/data, never copied) with their dense references and slide tables, and synthetic slides
  with exact truth;
- **models**: a FLASH leave-one-tile-out fold trained with histoseg's own datamodule and tasks
  (:func:`train_fold`), a per-class Gaussian colour model (:class:`ColourModel`), and prediction of
  a tile's labelled centre (:func:`predict_tile`);
- **scores**: the confusion matrix (torchmetrics, as training's), per-class Dice
  (:func:`histoseg.tasks.dice_iou_from_confusion`) and the interstitial fraction
  (:func:`histoseg.report.areas.interstitial_fraction`) -- no second copy of a metric.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import ndimage

from histoseg.io.text import write_slide_table
from histoseg.report.areas import interstitial_fraction as fraction_of_counts

if TYPE_CHECKING:
    import lightning as L

ROOT = Path(__file__).resolve().parents[1]
FLASH = ROOT.parent / "shared" / "data" / "flash-mouse-pas"
NAMES = ["adenine", "alport", "healthy", "iri", "ntn", "uuo"]
VALUE_MAP = {
    0: "interstitium",
    1: "tubules",
    7: "tubules",
    2: "glomeruli",
    3: "glomeruli",
    4: "other",
    5: "other",
    6: "other",
}
WHITE_MAP = {0: "other"}
CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]
SCORED = ["interstitium", "tubules", "glomeruli", "other"]
SLIDE_MPP = 0.34  # estimated upstream (see ../shared/data/README.md)
GRID_SPACING_UM = 10.0  # grid points for --task grid (about 17 x 17 points per tile)


def reference(name: str) -> np.ndarray:
    """Dense reference of a tile's labelled centre, class indices (516, 516)."""
    from PIL import Image

    from histoseg.labels.dense import load_dense_labels

    image = np.asarray(Image.open(FLASH / "images" / f"{name}_01.png").convert("RGB"))[62:578, 62:578]
    return load_dense_labels(
        FLASH / "labels" / f"{name}_01-labels.png",
        CLASSES,
        image_size=(640, 640),
        value_map=VALUE_MAP,
        offset=(62, 62),
        white_value_map=WHITE_MAP,
        image=image,
    )


def write_table(
    folder: Path,
    held_out: str,
    labels: str,
    fraction: float,
    brush_um: float,
    method: str = "skeleton",
    stroke_length: float = 40.0,
) -> tuple[Path, tuple[int, int]]:
    """Slide table: five training tiles (dense or simulated scribbles), the held-out one as val.

    Returns:
        The table's path and (pixels labelled for training, labelled pixels of the dense
        references of the training tiles), both in level-0 pixels.
    """
    from histoseg.labels.scribbles import write_scribbles_geojson
    from histoseg.labels.simulate import simulate_scribbles
    from histoseg.labels.strokes import rasterize_strokes

    rows = []
    labelled = [0, 0]
    for i, name in enumerate(NAMES):
        image = FLASH / "images" / f"{name}_01.png"
        split = "val" if name == held_out else "train"
        if labels == "points" and split == "train":
            from histoseg.labels.points import PointSet, write_points_csv
            from histoseg.labels.simulate import grid_points_from_mask

            points = grid_points_from_mask(reference(name), spacing_px=GRID_SPACING_UM / SLIDE_MPP)
            points = PointSet(x=points.x + 62, y=points.y + 62, label=points.label)
            path = folder / f"{name}.points.csv"
            write_points_csv(points, path, CLASSES)
            rows.append([image, path, "points", split, SLIDE_MPP, "", ""])
        elif labels == "scribbles" and split == "train":
            mask = reference(name)
            brush_px = max(1, round(brush_um / SLIDE_MPP))
            strokes = simulate_scribbles(
                mask,
                fraction=fraction,
                brush_px=brush_px,
                seed=i,
                method=method,
                stroke_length_brushes=stroke_length,
            )
            labelled[0] += int((rasterize_strokes(strokes, mask.shape, brush_px) != 255).sum())
            labelled[1] += int((mask != 255).sum())
            path = folder / f"{name}.scribbles.geojson"
            # strokes are in mask pixels; the mask starts at level-0 (62, 62)
            from histoseg.labels.strokes import Stroke

            shifted = [Stroke(s.class_index, s.xy + 62.0) for s in strokes]
            write_scribbles_geojson(shifted, path, CLASSES, brush_px=max(1, round(brush_um / SLIDE_MPP)))
            rows.append([image, path, "scribbles", split, SLIDE_MPP, "", ""])
        else:
            if split == "train":
                dense_px = int((reference(name) != 255).sum())
                labelled[0] += dense_px
                labelled[1] += dense_px
            rows.append(
                [image, FLASH / "labels" / f"{name}_01-labels.png", "dense", split, SLIDE_MPP, 62, 62]
            )
    columns = ("slide", "labels", "kind", "split", "mpp", "label_offset_x", "label_offset_y")
    table = write_slide_table(folder / "slides.csv", [dict(zip(columns, row, strict=True)) for row in rows])
    return table, (labelled[0], labelled[1])


def predict_tile(model: torch.nn.Module, name: str, mpp: float) -> np.ndarray:
    """Predicted classes of the tile's labelled centre at level 0, (516, 516)."""
    from PIL import Image

    from histoseg.io.slide import Slide

    with Slide(FLASH / "images" / f"{name}_01.png", mpp=SLIDE_MPP) as slide:
        w, h = slide.size_at_mpp(mpp)
        image = slide.read_at_mpp(0, 0, w, h, mpp)
    multiple = getattr(model, "size_multiple", 32)
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    with torch.inference_mode():
        pred = model(x)[0, :, :h, :w].argmax(0).numpy().astype(np.uint8)
    full = np.asarray(Image.fromarray(pred).resize((640, 640), Image.Resampling.NEAREST))
    return full[62:578, 62:578]


def save_figure(path: Path, name: str, ref: np.ndarray, pred: np.ndarray) -> None:
    """Tile | reference overlay | prediction overlay (labelled centre, level-0 pixels)."""
    from PIL import Image

    from histoseg.report.areas import class_colors
    from histoseg.report.figures import blend_labels

    image = np.asarray(Image.open(FLASH / "images" / f"{name}_01.png").convert("RGB"))[62:578, 62:578]
    colors = class_colors(CLASSES)
    panels = [image, blend_labels(image, ref, colors, [255]), blend_labels(image, pred, colors, [255])]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(panels, axis=1)).save(path)


def quiet_trainer(**options: Any) -> L.Trainer:
    """A CPU Trainer of one device that trains only: no logger, checkpoints, bars, summary or validation.

    ``options`` (``max_epochs``, ``callbacks``, ...) are added to or replace these.
    """
    import lightning as L

    settings: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
    }
    return L.Trainer(**{**settings, **options})


def train_fold(
    args: argparse.Namespace, held_out: str, folder: Path
) -> tuple[torch.nn.Module, float, float, tuple[int, int]]:
    import lightning as L

    from histoseg.datamodules import SlideDataModule
    from histoseg.tasks import SegmentationTask
    from histoseg.training_options import group_options

    # Seed before the network is built: its random decoder/head init must not depend on which
    # folds ran before (a fold's result is then the same alone or in a full run).
    L.seed_everything(args.seed, verbose=False)
    grid = args.task == "grid"
    table, labelled = write_table(
        folder,
        held_out,
        "points" if grid else args.labels,
        args.scribble_fraction,
        args.brush_um,
        args.scribble_method,
        args.stroke_length,
    )
    dm = SlideDataModule(**group_options(
        slides=str(table),
        classes=CLASSES,
        value_map=VALUE_MAP,
        white_value_map=WHITE_MAP,
        mpp=args.mpp,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        patches_per_epoch=args.steps * args.batch_size // args.epochs,
        val_patches=1,
        class_balanced=True,
        border_w0=args.border_w0,
        border_sigma_um=args.border_sigma_um,
        class_weighting=args.class_weighting,
        brush_um=args.brush_um,
        scribble_grow_um=args.grow_um if args.labels == "scribbles" else 0.0,
        scribble_grow_classes=args.grow_classes.split(",") if args.grow_classes else None,
        num_workers=0,
        seed=args.seed,
        centered=grid,
        stain_jitter=args.stain_jitter,
    ))
    if grid:
        from histoseg.tasks import PatchClassificationTask

        task: L.LightningModule = PatchClassificationTask(
            classes=CLASSES, mpp=args.mpp, patch_size=args.patch_size, lr=args.lr, scheduler="cosine"
        )
    else:
        task = SegmentationTask(
            classes=CLASSES,
            mpp=args.mpp,
            patch_size=args.patch_size,
            encoder=args.encoder,
            encoder_weights=args.encoder_weights,
            decoder_channels=[128, 64, 32, 24, 16],
            lr=args.lr,
            channels_last=True,
            loss=args.loss,
            regularizer=args.regularizer,
            regularizer_weight=args.regularizer_weight,
        )
    trainer = quiet_trainer(max_epochs=args.epochs)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(task, dm)
    network = task.network.eval()
    if grid:
        from histoseg.models.dense import DensePredictor

        network = DensePredictor(network, patch_size=args.patch_size, method="atrous")
        network.size_multiple = 1  # type: ignore[assignment]
    if args.labels == "scribbles" and args.grow_um:
        args.growth_stats.append(growth_agreement(dm))
    return network, time.perf_counter() - wall, time.process_time() - cpu, labelled


def growth_agreement(dm) -> tuple[int, int, int]:  # noqa: ANN001
    """Final training labels (grown scribbles) of the training tiles against the dense references.

    Returns:
        (labelled training-grid pixels inside the references' labelled centres, of which agree
        with the reference, reference pixels on the grid), counted at the training mpp.
    """
    counts = [0, 0, 0]
    for item in dm._labelled["train"]:
        ref = reference(Path(item.path).name.split("_01")[0])
        rows, cols = np.indices(item.labels.shape)
        # training-grid pixel centres in level-0 pixels, then in the reference's centre crop
        y = ((rows + 0.5) * item.scale).astype(int) - 62
        x = ((cols + 0.5) * item.scale).astype(int) - 62
        inside = (y >= 0) & (y < ref.shape[0]) & (x >= 0) & (x < ref.shape[1])
        truth = ref[y[inside], x[inside]]
        grown = item.labels[inside]
        known = truth != 255
        counts[0] += int(((grown != 255) & known).sum())
        counts[1] += int(((grown == truth) & known).sum())
        counts[2] += int(known.sum())
    return counts[0], counts[1], counts[2]


def confusion(ref: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """(n, n) int64 confusion matrix of the labelled pixels (rows = reference, 255 = unlabelled): training's metric."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    matrix = multiclass_confusion_matrix(
        torch.from_numpy(np.asarray(pred, np.int64)).ravel(),
        torch.from_numpy(np.asarray(ref, np.int64)).ravel(),
        num_classes=n,
        ignore_index=255,
    )
    return matrix.numpy().astype(np.int64)


def dice(conf: np.ndarray, classes: list[str] | None = None) -> dict[str, float]:
    """Per-class Dice from a (C, C) confusion matrix (rows = reference); NaN for an absent class."""
    from histoseg.tasks import dice_iou_from_confusion

    values = dice_iou_from_confusion(torch.as_tensor(np.asarray(conf)))[0].double().tolist()
    return {c: float(v) for c, v in zip(classes or CLASSES, values, strict=False)}


def interstitial_fraction(labels: np.ndarray, classes: list[str] | None = None) -> float:
    """The interstitial fraction of a label map (255 = unlabelled is left out), by histoseg.report."""
    names = classes or CLASSES
    counts = np.bincount(np.asarray(labels)[np.asarray(labels) != 255].ravel(), minlength=len(names))
    return float(fraction_of_counts(counts[: len(names)], names))


def synthetic_slides(n: int, size: tuple[int, int]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from histoseg.synthetic import render_slide

    out = []
    for i in range(n):
        slide = render_slide(seed=100 + i, width=size[0], height=size[1])
        out.append((f"synthetic_{i}", slide.image, slide.labels))
    return out


def features(image: np.ndarray) -> np.ndarray:
    """(H*W, 9) float32: RGB, RGB blurred at sigma 1 and 4 px, scaled to [0, 1]."""
    rgb = image.astype(np.float32) / 255.0
    parts = [rgb]
    for sigma in (1.0, 4.0):
        parts.append(np.stack([ndimage.gaussian_filter(rgb[..., c], sigma) for c in range(3)], -1))
    return np.concatenate(parts, -1).reshape(-1, 9)


class ColourModel:
    """Per-class Gaussian (diagonal covariance) on colour features, with class priors."""

    def fit(self, images: list[np.ndarray], labels: list[np.ndarray]) -> ColourModel:
        x = np.concatenate([features(i) for i in images])
        y = np.concatenate([lab.ravel() for lab in labels])
        self.classes = np.unique(y[y < 255])
        self.mean = np.stack([x[y == c].mean(0) for c in self.classes])
        self.var = np.stack([x[y == c].var(0) + 1e-4 for c in self.classes])
        self.logprior = np.log(np.array([np.mean(y == c) for c in self.classes]))
        return self

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = features(image)
        score = np.stack(
            [
                -0.5 * (((x - m) ** 2) / v + np.log(v)).sum(1) + p
                for m, v, p in zip(self.mean, self.var, self.logprior, strict=True)
            ],
            1,
        )
        return self.classes[score.argmax(1)].reshape(image.shape[:2]).astype(np.uint8)
