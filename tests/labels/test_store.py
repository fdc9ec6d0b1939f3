"""labels/store.py: the tiled store equals the whole grid it replaces, and the prepared-labels cache.

Known answers: every window of a random sparse grid equals the slice of the grid (255 outside),
the class positions equal the whole-grid draws the datasets made before (same rng), and the
cache is reused warm and rebuilt when the labels' content or an option changes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from histoseg import IGNORE_INDEX, KIDNEY_CLASSES
from histoseg.labels import store as store_module
from histoseg.labels.grid import GridOptions
from histoseg.labels.store import TiledLabels, prepare_labels
from histoseg.labels.table import SlideRecord


def _sparse_grid(shape, fraction, seed):
    rng = np.random.default_rng(seed)
    grid = np.full(shape, IGNORE_INDEX, np.uint8)
    hit = rng.random(shape) < fraction
    grid[hit] = rng.integers(0, 5, hit.sum())
    return grid


def _old_index_positions(labels, max_per_class, seed):
    """The whole-grid draws of datasets.LabelledSlide.index_positions before the store."""
    rng = np.random.default_rng(seed)
    flat = labels.ravel()
    out = {}
    for cls in np.unique(flat):
        if cls == IGNORE_INDEX:
            continue
        pos = np.flatnonzero(flat == cls)
        if pos.size > max_per_class:
            pos = np.sort(rng.choice(pos, max_per_class, replace=False))
        out[int(cls)] = pos.astype(np.int64)
    return out


def test_windows_equal_the_slices_of_the_whole_grid():
    grid = _sparse_grid((70, 53), 0.1, seed=1)
    store = TiledLabels.from_array(grid, tile=16)
    assert np.array_equal(store.to_array(), grid)
    assert store.counts[:5].tolist() == np.bincount(grid[grid != 255], minlength=5).tolist()
    assert store.val.size == (grid != 255).sum()  # unlabelled pixels are not stored
    padded = np.full((70 + 160, 53 + 160), 255, np.uint8)
    padded[80:150, 80:133] = grid
    rng = np.random.default_rng(2)
    for _ in range(200):
        row, col = (int(v) for v in rng.integers(-40, 70, 2))
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        expected = padded[row + 80 : row + 80 + h, col + 80 : col + 80 + w]
        assert np.array_equal(store.window(row, col, h, w), expected), (row, col, h, w)
        assert store.any_labelled(row, col, h, w) == bool((expected != 255).any())


def test_from_sparse_equals_from_array_and_skips_empty_tiles():
    grid = np.full((40, 40), 255, np.uint8)
    grid[3, 5], grid[37, 38] = 2, 4
    flat = np.flatnonzero(grid != 255)
    store = TiledLabels.from_sparse(grid.shape, flat, grid.ravel()[flat], tile=16)
    assert np.array_equal(store.to_array(), grid)
    assert np.diff(store.offsets).tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert not store.any_labelled(16, 0, 16, 40)


@pytest.mark.parametrize("max_per_class", [10**6, 50])
def test_class_positions_are_the_whole_grid_draws(max_per_class):
    grid = _sparse_grid((300, 270), 0.05, seed=3)
    store = TiledLabels.from_array(grid, tile=64)
    got = store.class_positions(max_per_class, seed=7)
    want = _old_index_positions(grid, max_per_class, seed=7)
    assert sorted(got) == sorted(want)
    for cls in want:
        assert np.array_equal(got[cls], want[cls]), cls


# -- the cache --------------------------------------------------------------------------------------


def _scribble_row(tmp_path, name="s0", x=40.0):
    from histoseg.labels.scribbles import write_scribbles_geojson
    from tests.conftest import make_labelled_slide

    slide, _, _ = make_labelled_slide(tmp_path, name, seed=0)  # 320 x 256 level-0 px at 0.5 mpp
    labels = tmp_path / f"{name}.geojson"
    write_scribbles_geojson(
        [(2, np.array([[x, 20.0], [200.0, 30.0]])), (1, np.array([[10.0, 200.0]]))], labels, KIDNEY_CLASSES
    )
    return SlideRecord(slide=slide, labels=labels, kind="scribbles")


def test_cache_cold_then_warm_and_invalidated_by_labels_or_options(tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOSEG_CACHE", str(tmp_path / "cache"))
    record = _scribble_row(tmp_path)
    options = GridOptions(classes=KIDNEY_CLASSES, mpp=1.0, brush_um=3.0)
    cold = prepare_labels(record, options)
    assert not cold.reused and cold.folder.parent == tmp_path / "cache" / "prepared-labels"
    reference = prepare_labels(record, options, cache=False).store.to_array()
    assert np.array_equal(cold.store.to_array(), reference) and (reference != 255).sum() > 100

    def no_build(*args):
        raise AssertionError("a warm cache must not build again")

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "_build", no_build)
        warm = prepare_labels(record, options)
    assert warm.reused and warm.folder == cold.folder
    assert np.array_equal(warm.store.to_array(), reference) and warm.origin == cold.origin
    assert isinstance(warm.store.pos, np.memmap)  # read on demand, shared by processes
    sent = pickle.loads(pickle.dumps(warm.store))  # a spawned DataLoader worker maps the file again
    assert isinstance(sent.pos, np.memmap) and np.array_equal(sent.to_array(), reference)
    small = warm.store.offsets.nbytes + warm.store.counts.nbytes  # the pixels travel as file names
    assert len(pickle.dumps(warm.store)) < small + 600 < small + warm.store.pos.nbytes + warm.store.val.nbytes

    wider = prepare_labels(record, GridOptions(classes=KIDNEY_CLASSES, mpp=1.0, brush_um=5.0))
    assert not wider.reused and wider.folder != cold.folder
    assert (wider.store.to_array() != 255).sum() > (reference != 255).sum()

    _scribble_row(tmp_path, x=60.0)  # same file name, other content
    moved = prepare_labels(record, options)
    assert not moved.reused and moved.folder != cold.folder
    assert not np.array_equal(moved.store.to_array(), reference)
    names = sorted(p.name for p in (tmp_path / "cache" / "prepared-labels").iterdir())
    assert len(names) == 3 and not any(n.startswith(".tmp") for n in names)


def test_class_positions_are_cached_per_seed_and_equal_the_uncached(tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOSEG_CACHE", str(tmp_path / "cache"))
    record = _scribble_row(tmp_path)
    options = GridOptions(classes=KIDNEY_CLASSES, mpp=1.0, brush_um=3.0)
    first = prepare_labels(record, options).class_positions(20, seed=4)
    assert (first := {c: np.asarray(p) for c, p in first.items()})
    again = prepare_labels(record, options).class_positions(20, seed=4)
    assert all(isinstance(p, np.memmap) for p in again.values())  # a draw reads one position
    want = _old_index_positions(prepare_labels(record, options, cache=False).store.to_array(), 20, 4)
    for cls in want:
        assert np.array_equal(first[cls], want[cls]) and np.array_equal(again[cls], want[cls])


def _prepare_in_child(args):
    cache, record, barrier = args
    os.environ["HISTOSEG_CACHE"] = cache
    barrier.wait()
    prepared = prepare_labels(record, GridOptions(classes=KIDNEY_CLASSES, mpp=1.0, brush_um=3.0))
    return str(prepared.folder), int((prepared.store.to_array() != 255).sum())


def test_concurrent_ranks_build_one_folder_and_agree(tmp_path):
    record = _scribble_row(tmp_path)
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(3)
        with ctx.Pool(3) as pool:
            results = pool.map(_prepare_in_child, [(str(tmp_path / "cache"), record, barrier)] * 3)
    assert len(set(results)) == 1
    folders = list((tmp_path / "cache" / "prepared-labels").iterdir())
    assert [f.name for f in folders] == [Path(results[0][0]).name]
    assert json.loads((folders[0] / "meta.json").read_text())["kind"] == "scribbles"


def test_a_damaged_cache_folder_is_prepared_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOSEG_CACHE", str(tmp_path / "cache"))
    record = _scribble_row(tmp_path)
    options = GridOptions(classes=KIDNEY_CLASSES, mpp=1.0, brush_um=3.0)
    cold = prepare_labels(record, options)
    (cold.folder / "pos.npy").write_bytes(b"truncated")
    again = prepare_labels(record, options)
    assert not again.reused and again.folder == cold.folder
    assert np.array_equal(
        again.store.to_array(), prepare_labels(record, options, cache=False).store.to_array()
    )
    assert prepare_labels(record, options).reused


@pytest.mark.parametrize("missing", ["labels", "slide"])
def test_a_missing_file_is_reported_by_its_reader_not_by_the_cache_key(tmp_path, monkeypatch, missing):
    from histoseg.errors import HistosegError

    monkeypatch.setenv("HISTOSEG_CACHE", str(tmp_path / "cache"))
    record = _scribble_row(tmp_path)
    getattr(record, missing).unlink()
    with pytest.raises(HistosegError, match=rf"{getattr(record, missing).name}.*not found"):
        prepare_labels(record, GridOptions(classes=KIDNEY_CLASSES, mpp=1.0, brush_um=3.0))


def test_unwritable_cache_keeps_the_labels_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("HISTOSEG_CACHE", str(blocker / "cache"))  # a folder under a file cannot exist
    record = _scribble_row(tmp_path)
    prepared = prepare_labels(record, GridOptions(classes=KIDNEY_CLASSES, mpp=1.0, brush_um=3.0))
    assert prepared.folder is None and (prepared.store.to_array() != 255).sum() > 100
