import numpy as np
import pytest
import torch

from histoseg import KIDNEY_CLASSES
from histoseg.datasets import (
    EpochSampler,
    GridPatchDataset,
    PatchOptions,
    RandomPatchDataset,
    prepare_labelled_slide,
)
from histoseg.labels.grid import GridOptions
from histoseg.labels.table import read_slide_table
from tests.conftest import CLASS_COLOURS


def colour_to_label(image: np.ndarray) -> np.ndarray:
    dist = ((image[..., None, :].astype(int) - CLASS_COLOURS[None, None].astype(int)) ** 2).sum(-1)
    return dist.argmin(-1)


@pytest.mark.parametrize("mpp, patch", [(0.5, 32), (1.0, 32)])
def test_patches_align_image_and_mask(table, mpp, patch):
    path, truth = table
    slides = [
        prepare_labelled_slide(r, GridOptions(classes=KIDNEY_CLASSES, mpp=mpp))
        for r in read_slide_table(path)
        if r.split == "train"
    ]
    dataset = RandomPatchDataset(
        slides, PatchOptions(patch_size=patch, mpp=mpp), num_classes=5, class_balanced=True
    )
    agree = []
    for index in range(20):
        sample = dataset[index]
        image = sample["image"].permute(1, 2, 0).numpy()
        mask = sample["mask"].numpy()
        inside = mask != 255
        predicted = colour_to_label(image)
        agree.append((predicted[inside] == mask[inside]).mean())
    # exact at 0.5 (level 0); at 1.0 the image is resampled, so boundary pixels may blend
    assert np.mean(agree) > (0.999 if mpp == 0.5 else 0.95)


def test_random_dataset_is_deterministic_and_class_balanced(table):
    path, _ = table
    slides = [
        prepare_labelled_slide(r, GridOptions(classes=KIDNEY_CLASSES, mpp=0.5))
        for r in read_slide_table(path)
        if r.split == "train"
    ]
    a = RandomPatchDataset(
        slides, PatchOptions(patch_size=32, mpp=0.5), 5, class_balanced=True, centered=True, seed=3
    )
    b = RandomPatchDataset(
        slides, PatchOptions(patch_size=32, mpp=0.5), 5, class_balanced=True, centered=True, seed=3
    )
    assert all(torch.equal(a[i]["image"], b[i]["image"]) for i in range(5))
    centres = [int(a[i]["mask"][16, 16]) for i in range(400)]
    counts = np.bincount(centres, minlength=5)
    present = counts[counts > 0]
    assert len(present) >= 4 and present.min() > 0.5 * present.max()  # near-uniform over classes
    assert 255 not in centres


def test_cached_labels_serve_the_same_patches_in_workers_and_after_pickling(table, tmp_path, monkeypatch):
    """Memory-mapped stores and positions: forked workers and a pickled (spawned) dataset agree."""
    import pickle

    from torch.utils.data import DataLoader

    monkeypatch.setenv("HISTOSEG_CACHE", str(tmp_path / "cache"))
    path, _ = table
    rows = [r for r in read_slide_table(path) if r.split == "train"]
    uncached = [prepare_labelled_slide(r, GridOptions(classes=KIDNEY_CLASSES, mpp=0.5), cache=False) for r in rows]
    cached = [prepare_labelled_slide(r, GridOptions(classes=KIDNEY_CLASSES, mpp=0.5)) for r in rows]
    again = [prepare_labelled_slide(r, GridOptions(classes=KIDNEY_CLASSES, mpp=0.5)) for r in rows]
    assert all(s.prepared is not None and s.prepared.reused for s in again)
    options = PatchOptions(patch_size=32, mpp=0.5)
    reference = RandomPatchDataset(uncached, options, 5, class_balanced=True, seed=3)
    served = RandomPatchDataset(again, options, 5, class_balanced=True, seed=3)
    assert isinstance(served.cutter.slides[0].class_positions[1], np.memmap)
    sent = pickle.loads(pickle.dumps(served))
    loader = DataLoader(served, batch_size=4, sampler=range(12), num_workers=2)
    batches = [b["mask"] for b in loader]
    for i in range(12):
        want = reference[i]
        assert torch.equal(sent[i]["mask"], want["mask"]) and torch.equal(sent[i]["image"], want["image"])
        assert torch.equal(batches[i // 4][i % 4], want["mask"])
    assert len(cached) == len(again) == 2


def test_grid_dataset_covers_labels_and_weights(table):
    path, truth = table
    record = read_slide_table(path)[0]
    slide = prepare_labelled_slide(record, GridOptions(classes=KIDNEY_CLASSES, mpp=0.5))
    options = PatchOptions(patch_size=64, mpp=0.5, object_classes=(2, 3), border_w0=10.0, border_sigma_px=5.0)
    dataset = GridPatchDataset([slide], options)
    assert len(dataset) == (256 // 64) * (320 // 64)
    sample = dataset[0]
    assert np.array_equal(sample["mask"].numpy(), truth["s0.tif"][:64, :64])
    assert sample["weight"].min() >= 1.0 and sample["weight"].dtype == torch.float32


def test_epoch_sampler_gives_fresh_indices():
    sampler = EpochSampler(4)
    assert list(sampler) == [0, 1, 2, 3]
    assert list(sampler) == [4, 5, 6, 7]
    assert len(sampler) == 4
    sampler.set_epoch(1)  # what Lightning does at each epoch start, also after a resume
    assert list(sampler) == [4, 5, 6, 7]


def test_border_term_applies_to_dense_labels_only(table):
    """Scribbles and points have no object boundaries: they get class weights, no border term."""
    import dataclasses

    path, _ = table
    dense = prepare_labelled_slide(read_slide_table(path)[0], GridOptions(classes=KIDNEY_CLASSES, mpp=0.5))
    options = PatchOptions(patch_size=64, mpp=0.5, object_classes=(2, 3), border_w0=10.0, border_sigma_px=5.0)
    dense_weights = torch.stack([s["weight"] for s in GridPatchDataset([dense], options)])
    assert dense_weights.max() > 2.0  # the border term is there (w0 = 10 between objects)
    sparse = dataclasses.replace(dense, kind="scribbles")
    for sample in GridPatchDataset([sparse], options):
        labelled = sample["mask"] != 255
        assert torch.equal(sample["weight"], labelled.float())  # 1 on labels, 0 elsewhere


@pytest.mark.parametrize("n_slides, world", [(3, 2), (1, 2), (5, 3), (2, 4)])
def test_slide_shards_cover_every_slide_once(n_slides, world):
    from histoseg.datasets import SlidePathDataset, SlideShardSampler

    dataset = SlidePathDataset([f"s{i}.svs" for i in range(n_slides)])
    shards = [[dataset[i] for i in SlideShardSampler(dataset, world, rank)] for rank in range(world)]
    assert all(len(shard) >= 1 for shard in shards)  # every process runs the loop (and its hooks)
    real = [path for shard in shards for path in shard if path]
    assert sorted(real) == sorted(dataset.paths)  # each slide exactly once
    assert sum(path == "" for shard in shards for path in shard) == max(0, world - n_slides)
