"""Self-training from scribbles: superpixel pseudo-labels on slides and the Lightning callback."""

from __future__ import annotations

import csv

import lightning as L
import numpy as np
import pytest
from conftest import CLASS_COLOURS, make_labelled_slide

from histoseg import KIDNEY_CLASSES
from histoseg.datamodules import SlideDataModule
from histoseg.datasets import prepare_labelled_slide, pseudo_label_slide, read_slide_table
from histoseg.errors import ConfigError
from histoseg.labels.scribbles import simulate_scribbles, write_scribbles_geojson
from histoseg.selftraining import ScribbleSelfTraining, model_probabilities
from histoseg.tasks import SegmentationTask

CLASSES = KIDNEY_CLASSES


def oracle(image: np.ndarray) -> np.ndarray:
    """Probabilities of a perfect model for the test slides: one-hot of the nearest class colour."""
    distance = ((image[None].astype(int) - CLASS_COLOURS[:, None, None].astype(int)) ** 2).sum(-1)
    return (distance == distance.min(0, keepdims=True)).astype(np.float32)


def scribble_table(tmp_path, n: int = 2, fraction: float = 0.03) -> tuple[str, list[np.ndarray]]:
    truths = []
    with open(tmp_path / "slides.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "labels", "kind", "split"])
        for i in range(n):
            slide, _, truth = make_labelled_slide(tmp_path, f"s{i}", seed=3 + i)
            strokes = simulate_scribbles(truth, fraction=fraction, brush_px=3, seed=i)
            write_scribbles_geojson(strokes, tmp_path / f"s{i}.geojson", CLASSES, brush_px=3)
            writer.writerow([slide.name, f"s{i}.geojson", "scribbles", "train"])
            truths.append(truth)
    return str(tmp_path / "slides.csv"), truths


def test_pseudo_label_slide_with_a_perfect_model(tmp_path):
    """With perfect probabilities, pseudo-labels cover most of the slide, all correct, strokes kept,
    and the result does not depend on the window size (windows overlap by a halo)."""
    table, (truth, _) = scribble_table(tmp_path)
    record = read_slide_table(table)[0]
    item = prepare_labelled_slide(record, CLASSES, 0.5, brush_um=1.5)
    seeds = item.labels.copy()
    labels = pseudo_label_slide(item, seeds, oracle, 0.5, segment_px=8, threshold=0.8, window=96)
    drawn, labelled = seeds != 255, labels != 255
    assert np.array_equal(labels[drawn], seeds[drawn])
    assert labelled.mean() >= 0.8 and labelled.sum() >= 20 * drawn.sum()
    assert (labels[labelled] == truth[labelled]).mean() >= 0.99
    whole = pseudo_label_slide(item, seeds, oracle, 0.5, segment_px=8, threshold=0.8, window=4096)
    assert (whole[labelled] == labels[labelled]).mean() >= 0.99


def test_model_probabilities_pads_to_the_network_multiple():
    task = SegmentationTask(
        encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=[16, 8, 8]
    )
    image = np.random.default_rng(0).integers(0, 255, (37, 50, 3), dtype=np.uint8)
    task.train()
    probs = model_probabilities(task, image, size_multiple=8)
    assert probs.shape == (len(task.classes), 37, 50) and np.allclose(probs.sum(0), 1, atol=1e-5)
    assert task.training  # the task's mode is restored


def test_self_training_callback_renews_the_training_labels(tmp_path):
    """Two epochs, self-training before the second: the second epoch samples from the pseudo-labels,
    which keep every scribble; the validation labels are untouched."""
    table, truths = scribble_table(tmp_path)
    L.seed_everything(0, verbose=False)
    dm = SlideDataModule(
        slides=table, mpp=0.5, patch_size=64, batch_size=2, patches_per_epoch=4, val_patches=1, num_workers=0
    )
    task = SegmentationTask(
        encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=[16, 8, 8]
    )
    callback = ScribbleSelfTraining(start_epoch=1, segment_um=4.0, threshold=0.3)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[callback],
    )
    trainer.fit(task, dm)
    assert trainer.reload_dataloaders_every_n_epochs == 1
    assert len(callback.rounds) == 1
    epoch, before, after = callback.rounds[0]
    items = dm._labelled["train"]
    seeds = [dm._scribble_seeds[id(item)] for item in items]
    assert epoch == 1 and before == sum(int((s != 255).sum()) for s in seeds) and after > before
    for item, seed in zip(items, seeds, strict=True):
        assert np.array_equal(item.labels[seed != 255], seed[seed != 255])
    # the last training dataloader was built from the new labels
    counts = trainer.train_dataloader.dataset._counts.sum()
    assert counts == sum(len(p) for item in items for p in item.class_positions.values())
    assert counts == after
    assert np.array_equal(dm.train_class_counts, sum(item.counts(len(CLASSES)) for item in items))


def test_self_training_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="threshold"):
        ScribbleSelfTraining(threshold=1.5)
    with pytest.raises(ConfigError, match="start_epoch"):
        ScribbleSelfTraining(start_epoch=0)
    with pytest.raises(ConfigError, match="segment_um"):
        ScribbleSelfTraining(segment_um=0)
    table, _ = scribble_table(tmp_path, n=1)
    dm = SlideDataModule(
        slides=table, mpp=0.5, patch_size=64, batch_size=2, patches_per_epoch=2, num_workers=0
    )
    task = SegmentationTask(
        encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=[16, 8, 8]
    )
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        callbacks=[ScribbleSelfTraining(start_epoch=1)],
    )
    with pytest.raises(ConfigError, match="raise max_epochs"):
        trainer.fit(task, dm)
    # dense training labels: nothing to pseudo-label
    dm.setup("fit")
    for item in dm._labelled["train"]:
        item.kind = "dense"
    with pytest.raises(ConfigError, match="kind=scribbles"):
        dm.pseudo_label_scribbles(oracle)
