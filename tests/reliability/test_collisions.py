"""Classes 2 (never touch what histoseg did not write), 3 (every slide named is accounted for) and 7 (disk
full, unwritable outputs) of issue 15."""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from histoseg.outputs import remove_stale_temporaries
from tests.conftest import make_labelled_slide
from tests.reliability.helpers import (  # noqa: F401
    expect_one_error,
    library_logs_follow_capture,
    run,
    snapshot,
    tiny_checkpoint,
)


@pytest.fixture
def cohort(tmp_path):
    slide, labels, _ = make_labelled_slide(tmp_path, "s", seed=0)
    labels.unlink()
    return tmp_path, slide, tiny_checkpoint(tmp_path.parent / f"{tmp_path.name}.ckpt")


def quantify(capsys, ckpt, slides, out, *extra):
    return run(
        capsys, "quantify", "--ckpt_path", ckpt, "--slides", slides, "--out", out, "--no_progress", *extra
    )


def report(out):
    return {s["slide"]: s for s in json.loads((out / "report.json").read_text())["slides"]}


# ---- class 2 ----------------------------------------------------------------------------------
def test_never_touch_slides_named_like_every_per_slide_output(capsys, cohort):
    folder, slide, ckpt = cohort
    shutil.copy(slide, folder / "s.labels.tif")  # a real slide named like s.tif's label map
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(folder / "s.overlay.png")  # no mpp: fails
    (folder / "s.geojson").write_text(
        '{"type": "FeatureCollection", "features": []}'
    )  # the user's annotation
    (folder / "s.tmp-1.tif").write_bytes(b"not a temporary of ours")
    before = snapshot(folder)
    # Named by a glob, files named like histoseg's outputs are slides (a folder as --slides skips
    # them: tests/io/test_slide.py); either way nothing of the user's is touched.
    everything = str(folder / "*")
    status, lines, err = quantify(capsys, ckpt, everything, folder)
    assert "Traceback" not in err
    after = snapshot(folder)
    assert {k: after[k] for k in before} == before  # bytes and mtime of every input untouched
    results = report(folder)
    assert results["s.tif"]["status"] == "ok" and results["s.tif"]["stem"] == "s.tif"
    assert results["s.labels.tif"]["status"] == "ok"
    assert {"s.tif.labels.tif", "s.labels.labels.tif", "s.tif.overlay.png"} <= set(after)
    assert results["s.overlay.png"]["status"] == "failed" and "--mpp" in results["s.overlay.png"]["error"]
    assert results["s.geojson"]["status"] == "failed"
    # a rerun finds the same names, reuses them and still touches nothing of the user's
    status2, _, err2 = quantify(capsys, ckpt, everything, folder)
    assert status2 == status and "Traceback" not in err2
    assert {k: snapshot(folder)[k] for k in before} == before
    assert set(report(folder)) == set(results)


@pytest.mark.parametrize("name", ["report.csv", "report.json", "cohort.png", "index.html"])
def test_never_touch_files_named_like_cohort_outputs(capsys, cohort, name):
    folder, slide, ckpt = cohort
    (folder / name).write_bytes(b"the user's own " + name.encode())
    before = snapshot(folder)
    expect_one_error(
        capsys,
        [name, "not written by histoseg", "choose another --out"],
        "quantify",
        "--ckpt_path",
        ckpt,
        "--slides",
        folder,
        "--out",
        folder,
    )
    assert snapshot(folder) == before  # nothing written at all


def test_never_touch_a_user_file_named_like_a_temporary(tmp_path):
    (tmp_path / "x.tmp-1.tif").write_bytes(b"mine")
    (tmp_path / ".x.tmp-999999999.tif").write_bytes(b"stale temporary of a dead process")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".x.tmp-999999999.tif"]
    assert (tmp_path / "x.tmp-1.tif").read_bytes() == b"mine"


# ---- class 3 ----------------------------------------------------------------------------------
def test_accounted_every_named_slide(capsys, cohort, monkeypatch):
    folder, slide, ckpt = cohort
    slides = folder / "in"
    slides.mkdir()
    shutil.copy(slide, slides / "ok.tif")
    shutil.copy(slide, slides / "locked.tif")
    (slides / "gone.svs").symlink_to(slides / "nowhere.svs")
    (slides / "a.svs").symlink_to(slides / "b.svs")
    (slides / "b.svs").symlink_to(slides / "a.svs")
    (slides / "dir.ndpi").mkdir()
    os.mkfifo(slides / "pipe.tif")
    import histoseg.io.slide as slide_module

    real_open = open

    def no_permission(path, *args, **kwargs):  # root ignores chmod: simulate an unreadable file
        if str(path).endswith("locked.tif"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(slide_module, "open", no_permission, raising=False)
    out = folder / "out"
    status, lines, err = quantify(capsys, ckpt, slides, out)
    assert status == 1 and "Traceback" not in err
    results = report(out)
    expected = {
        "ok.tif": "",
        "locked.tif": "Permission denied",
        "gone.svs": "dangling symbolic link",
        "a.svs": "symbolic link loop",
        "b.svs": "symbolic link loop",
        "dir.ndpi": "is a folder",
        "pipe.tif": "not a regular file",
    }
    assert set(results) == set(expected)
    for name, reason in expected.items():
        assert reason in results[name]["error"], (name, results[name]["error"])
    assert len(lines) == len(expected) - 1


@pytest.mark.parametrize("value", ["", "  "])
def test_accounted_empty_slides_value(capsys, cohort, value):
    folder, _, ckpt = cohort
    os.chdir(folder)  # an empty value once meant "the current folder"
    expect_one_error(
        capsys,
        ["--slides", "empty slide path"],
        "quantify",
        "--ckpt_path",
        ckpt,
        "--slides",
        value,
        "--out",
        folder / "out",
    )
    assert not (folder / "out").exists()


def test_accounted_a_single_dangling_link_is_reported(capsys, cohort):
    folder, _, ckpt = cohort
    (folder / "gone.svs").symlink_to(folder / "nowhere.svs")
    status, lines, _ = quantify(capsys, ckpt, folder / "gone.svs", folder / "out")
    assert status == 1 and len(lines) == 1 and "dangling symbolic link" in lines[0]


# ---- class 7 ----------------------------------------------------------------------------------
def test_disk_full_mid_slide(capsys, cohort, monkeypatch):
    folder, slide, ckpt = cohort
    out = folder / "out"
    import histoseg.quantify as quantify_module

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(quantify_module, "write_geojson", full)
    status, lines, err = quantify(capsys, ckpt, slide, out)
    assert status == 1 and "Traceback" not in err
    assert len(lines) == 1 and f"cannot write in {out} (No space left on device)" in lines[0]
    assert lines[0].endswith("free disk space or choose a writable --out folder")
    names = sorted(p.name for p in out.iterdir())
    assert "s.labels.tif" not in names and not [n for n in names if "tmp" in n or n.endswith(".raw")]
    assert report(out)["s.tif"]["status"] == "failed"


def test_disk_full_read_only_folder(capsys, cohort, monkeypatch):
    """Every rename into OUT fails (a folder turned read-only mid-run): nothing looks complete, exit 2."""
    folder, slide, ckpt = cohort
    out = folder / "out"
    out.mkdir()
    real_replace = os.replace

    def read_only(src, dst, *args, **kwargs):
        if os.path.dirname(os.path.abspath(dst)) == str(out):
            raise PermissionError(errno.EROFS, "Read-only file system", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", read_only)
    status, lines, err = quantify(capsys, ckpt, slide, out)
    assert status == 2 and "Traceback" not in err
    assert any(f"cannot write in {out} (Read-only file system)" in ln for ln in lines)
    assert lines[-1].startswith(f"error: {out}: cannot write the cohort report")
    assert sorted(p.name for p in out.iterdir()) == []
