"""io/files.py: atomic writes leave the destination untouched on failure; safe stems stay in the folder."""

import hashlib
import os

import pytest

from histoseg.errors import HistosegError
from histoseg.io.files import atomic_path, ensure_writable_dir, path_keys, safe_stem, sha256_file


def test_atomic_path_renames_only_on_success(tmp_path):
    final = tmp_path / "sub" / "report.csv"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".report.tmp-") and tmp.suffix == ".csv"
        tmp.write_text("new")
        assert not final.exists()  # nothing at the final name while writing
    assert final.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert final.read_text() == "new"  # the old file untouched
    assert sorted(p.name for p in final.parent.iterdir()) == ["report.csv"]  # no temporary left


def test_atomic_path_unwritable_folder_is_one_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HistosegError, match=r"cannot create the output folder .*; choose a writable folder"):
        with atomic_path(blocker / "x" / "out.csv"):
            pass
    with pytest.raises(HistosegError, match="choose another --out folder"):
        ensure_writable_dir(blocker / "x")
    assert ensure_writable_dir(tmp_path / "new") == tmp_path / "new" and (tmp_path / "new").is_dir()


@pytest.mark.parametrize(
    ("name", "stem"),
    [("../../etc/passwd", "passwd"), ("a b/c?.svs", "c_.svs"), ("...", "slide"), ("s 1.tif", "s_1.tif")],
)
def test_safe_stem_known_answers(name, stem):
    assert safe_stem(name) == stem


def test_sha256_and_path_keys(tmp_path):
    data = b"abc" * 1000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk=7) == hashlib.sha256(data).hexdigest()
    os.symlink(tmp_path / "f", tmp_path / "link")
    assert path_keys(tmp_path / "link") == {str(tmp_path / "link"), str((tmp_path / "f").resolve())}
