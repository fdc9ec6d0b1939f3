"""io/cache.py: the cache folder has one home, read by the synthetic source, the label cache and doctor."""

from pathlib import Path

from histoseg import doctor, sources
from histoseg.io.cache import cache_folder, default_cache_dir
from histoseg.labels.store import prepared_labels_dir


def test_one_cache_folder_for_every_reader(tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOSEG_CACHE", str(tmp_path / "c"))
    assert cache_folder() == (tmp_path / "c", "HISTOSEG_CACHE") == doctor.cache_folder()
    assert sources.SyntheticSlides().dataset_dir().parent == tmp_path / "c" / "synthetic-kidney"
    assert prepared_labels_dir() == tmp_path / "c" / "prepared-labels"
    monkeypatch.delenv("HISTOSEG_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "histoseg"
    assert cache_folder()[1] == "default; set HISTOSEG_CACHE to change"
