import csv

import numpy as np
import pytest
import torch
from conftest import CLASS_COLOURS, make_labelled_slide

from histoseg import KIDNEY_CLASSES
from histoseg.datasets import (
    EpochSampler,
    GridPatchDataset,
    PatchOptions,
    RandomPatchDataset,
    prepare_labelled_slide,
)
from histoseg.errors import ConfigError
from histoseg.labels.table import read_slide_table


@pytest.fixture
def table(tmp_path):
    rows = []
    truth = {}
    for i in range(3):
        slide, labels, mask = make_labelled_slide(tmp_path, f"s{i}", seed=i)
        rows.append({"slide": slide.name, "labels": labels.name, "split": "val" if i == 0 else "train"})
        truth[slide.name] = mask
    path = tmp_path / "slides.csv"
    with open(path, "w", newline="") as h:
        w = csv.DictWriter(h, fieldnames=["slide", "labels", "split"])
        w.writeheader()
        w.writerows(rows)
    return path, truth


def colour_to_label(image: np.ndarray) -> np.ndarray:
    dist = ((image[..., None, :].astype(int) - CLASS_COLOURS[None, None].astype(int)) ** 2).sum(-1)
    return dist.argmin(-1)


def test_read_slide_table(table, tmp_path):
    path, _ = table
    records = read_slide_table(path)
    assert [r.split for r in records] == ["val", "train", "train"]
    assert records[0].slide == (tmp_path / "s0.tif").resolve() and records[0].kind == "dense"
    bad = tmp_path / "bad.csv"
    bad.write_text("image,labels\na.tif,b.png\n")
    with pytest.raises(ConfigError, match="'slide' column"):
        read_slide_table(bad)
    bad.write_text("slide,split\na.tif,training\n")
    with pytest.raises(ConfigError, match=r"bad\.csv:2: split 'training'"):
        read_slide_table(bad)


@pytest.mark.parametrize("mpp, patch", [(0.5, 32), (1.0, 32)])
def test_patches_align_image_and_mask(table, mpp, patch):
    path, truth = table
    slides = [
        prepare_labelled_slide(r, KIDNEY_CLASSES, mpp) for r in read_slide_table(path) if r.split == "train"
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
        prepare_labelled_slide(r, KIDNEY_CLASSES, 0.5) for r in read_slide_table(path) if r.split == "train"
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
    uncached = [prepare_labelled_slide(r, KIDNEY_CLASSES, 0.5, cache=False) for r in rows]
    cached = [prepare_labelled_slide(r, KIDNEY_CLASSES, 0.5) for r in rows]
    again = [prepare_labelled_slide(r, KIDNEY_CLASSES, 0.5) for r in rows]
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
    slide = prepare_labelled_slide(record, KIDNEY_CLASSES, 0.5)
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
    dense = prepare_labelled_slide(read_slide_table(path)[0], KIDNEY_CLASSES, 0.5)
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


# ---- datamodules: a slide-table source composed into SlideDataModule -----------------------------------
def test_synthetic_source_is_composed_and_hparams_stay_plain(tmp_path):
    """SyntheticKidneyDataModule is SlideDataModule + a SyntheticSlides source: same table, same
    options; the hyperparameters a checkpoint stores stay plain values (weights_only loads them)."""
    from histoseg.datamodules import SlideDataModule, SyntheticKidneyDataModule
    from histoseg.sources import SyntheticSlides

    source = SyntheticSlides(root=str(tmp_path), n_slides=2, width=384, height=256)
    composed = SyntheticKidneyDataModule(synthetic=source, mpp=2.0, patch_size=64)
    direct = SlideDataModule(synthetic=source, mpp=2.0, patch_size=64)
    table = composed.slide_table()
    assert table == direct.slide_table() == str(source.dataset_dir() / "table-dense-val1.csv")
    rows = read_slide_table(table)
    assert [(r.split, r.kind) for r in rows] == [("val", "dense"), ("train", "dense")]
    assert composed.mpp == 2.0 and composed.patch_size == 64 and composed.synthetic is source
    assert composed.hparams["synthetic"] == {**source.__dict__}
    path = tmp_path / "hparams.pt"
    torch.save({"hparams": dict(composed.hparams)}, path)
    assert torch.load(path, weights_only=True)["hparams"]["synthetic"]["n_slides"] == 2
    assert [p.name for p in composed.predict_dataloader().dataset.paths] == [rows[0].slide.name]


def test_slide_sources_are_checked():
    from histoseg.datamodules import SlideDataModule
    from histoseg.sources import SyntheticSlides

    with pytest.raises(ConfigError, match="data.synthetic.n_slides=2 and data.synthetic.n_val=2"):
        SyntheticSlides(n_slides=2, n_val=2)
    with pytest.raises(ConfigError, match="n_slides=1"):
        SyntheticSlides(n_slides=1, n_val=0)
    with pytest.raises(ConfigError, match="data.slides='t.csv' and data.synthetic are both set"):
        SlideDataModule(slides="t.csv", synthetic=SyntheticSlides()).slide_table()
    with pytest.raises(ConfigError, match="data.slides is not set"):
        SlideDataModule().slide_table()
