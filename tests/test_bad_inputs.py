"""Malformed inputs across every command: one-line error naming the file and the fix, exit status 2
for user errors (1 for a cohort with failed slides), no traceback, no output that looks complete."""

import json

import numpy as np
import pytest
import torch
from conftest import ROOT, cli_exit_code, make_labelled_slide
from PIL import Image
from reliability_helpers import library_logs_follow_capture  # noqa: F401 (autouse fixture)

TINY = str(ROOT / "tests" / "conf" / "tiny.yaml")


def run(capsys, *args):
    code = cli_exit_code(list(args))
    err = capsys.readouterr().err
    return code, [ln for ln in err.splitlines() if ln.startswith("error: ")], err


def expect_user_error(capsys, needles, *args, code=2, stderr_needles=()):
    status, lines, err = run(capsys, *args)
    assert status == code, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    for needle in stderr_needles:  # e.g. warnings printed before the error
        assert needle in err, err[-2000:]
    return lines[0]


@pytest.fixture
def good(tmp_path):
    slide, labels, mask = make_labelled_slide(tmp_path, "good", seed=0)
    return tmp_path, slide, labels, mask


def table(folder, *rows, header="slide,labels,kind,split,mpp"):
    path = folder / "slides.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def fit(capsys, folder, needles, *extra, rows=None, stderr_needles=()):
    slides = table(folder, *rows) if rows else folder / "slides.csv"
    line = expect_user_error(
        capsys,
        needles,
        "fit",
        "--config",
        TINY,
        "--data.init_args.slides",
        slides,
        "--trainer.default_root_dir",
        folder / "run",
        *extra,
        stderr_needles=stderr_needles,
    )
    assert not list(folder.rglob("*.ckpt"))
    return line


# ---- fit: configuration -------------------------------------------------------------------------
def test_missing_config(capsys, tmp_path):
    expect_user_error(capsys, ["nope.yaml"], "fit", "--config", tmp_path / "nope.yaml")


def test_malformed_yaml(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: histoseg.tasks.SegmentationTask\n   init_args: [unclosed\n")
    expect_user_error(capsys, ["bad.yaml"], "fit", "--config", bad)


def test_unknown_config_key(capsys, good):
    fit(
        capsys,
        good[0],
        ["colour_jitter"],
        "--data.init_args.colour_jitter",
        "0.1",
        rows=["good.tif,good.png,dense,train,"],
    )


def test_patch_size_not_multiple_of_32(capsys, good):
    fit(
        capsys,
        good[0],
        ["data.patches.patch_size=100", "use 96 or 128"],
        "--data.init_args.patches.patch_size",
        "100",
        "--model.init_args.encoder_depth",
        "5",
        "--model.init_args.decoder_channels",
        "[16,16,8,8,8]",
        rows=["good.tif,good.png,dense,train,"],
    )


def test_missing_slide_table(capsys, tmp_path):
    expect_user_error(
        capsys,
        ["missing.csv", "not found"],
        "fit",
        "--config",
        TINY,
        "--data.init_args.slides",
        tmp_path / "missing.csv",
    )


def test_slide_table_without_slide_column(capsys, good):
    slides = table(good[0], "good.tif,good.png", header="image,labels")
    expect_user_error(
        capsys, ["slides.csv", "'slide' column"], "fit", "--config", TINY, "--data.init_args.slides", slides
    )


def test_slide_table_bad_split(capsys, good):
    fit(capsys, good[0], ["slides.csv:2", "split 'training'"], rows=["good.tif,good.png,dense,training,"])


# ---- fit: slides ----------------------------------------------------------------------------------
def test_missing_slide(capsys, good):
    fit(capsys, good[0], ["missing.tif", "not found"], rows=["missing.tif,good.png,dense,train,"])


def test_zero_byte_slide(capsys, good):
    (good[0] / "empty.svs").write_bytes(b"")
    fit(capsys, good[0], ["empty.svs", "empty file"], rows=["empty.svs,good.png,dense,train,"])


def test_non_image_with_slide_extension(capsys, good):
    (good[0] / "notes.svs").write_text("patient notes, not a slide\n" * 20)
    fit(capsys, good[0], ["notes.svs"], rows=["notes.svs,good.png,dense,train,"])


def test_truncated_tiff(capsys, good):
    data = good[1].read_bytes()
    (good[0] / "cut.tif").write_bytes(data[: int(len(data) * 0.8)])
    fit(capsys, good[0], ["cut.tif"], rows=["cut.tif,good.png,dense,train,"])


def test_slide_without_mpp(capsys, good):
    Image.fromarray(np.zeros((256, 320, 3), np.uint8)).save(good[0] / "plain.png")
    fit(capsys, good[0], ["plain.png", "--mpp"], rows=["plain.png,good.png,dense,train,"])


def test_negative_mpp_override(capsys, good):
    fit(capsys, good[0], ["good.tif", "positive"], rows=["good.tif,good.png,dense,train,-0.5"])


# ---- fit: labels ----------------------------------------------------------------------------------
def test_label_mask_wrong_shape(capsys, good):
    # a mask may be smaller than its slide (placed at an offset), never larger
    Image.fromarray(np.pad(good[3], 5)).save(good[0] / "large.png")
    fit(capsys, good[0], ["large.png", "label mask is 330 x 266"], rows=["good.tif,large.png,dense,train,"])


def test_label_values_outside_class_map(capsys, good):
    wrong = good[3].copy()
    wrong[5, 5] = 17
    Image.fromarray(wrong).save(good[0] / "wrong.png")
    fit(capsys, good[0], ["wrong.png", "[17]", "value_map"], rows=["good.tif,wrong.png,dense,train,"])


def test_rgb_label_mask(capsys, good):
    Image.fromarray(np.zeros((256, 320, 3), np.uint8)).save(good[0] / "rgb.png")
    fit(capsys, good[0], ["rgb.png", "colour"], rows=["good.tif,rgb.png,dense,train,"])


def test_points_outside_slide(capsys, good):
    (good[0] / "p.csv").write_text("x,y,class\n10,10,tubules\n5000,20,tubules\n")
    fit(capsys, good[0], ["p.csv"], rows=["good.tif,p.csv,points,train,"])


def test_points_unknown_class(capsys, good):
    (good[0] / "p.csv").write_text("x,y,class\n10,10,cortex\n")
    fit(capsys, good[0], ["p.csv", "cortex"], rows=["good.tif,p.csv,points,train,"])


def test_geojson_not_a_feature_collection(capsys, good):
    (good[0] / "s.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": []}))
    fit(capsys, good[0], ["s.geojson"], rows=["good.tif,s.geojson,scribbles,train,"])


def test_geojson_unknown_class_names(capsys, good):
    feature = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[10, 10], [50, 50]]},
        "properties": {"classification": {"name": "Medulla"}},
    }
    (good[0] / "s.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    fit(capsys, good[0], ["s.geojson", "Medulla"], rows=["good.tif,s.geojson,scribbles,train,"])


def test_geojson_with_only_empty_geometries_never_starts_training(capsys, good):
    """Every feature is skipped (with a warning naming them), so nothing is labelled: no training."""
    feature = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": []},
        "properties": {"classification": {"name": "tubules"}},
    }
    (good[0] / "s.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    fit(
        capsys,
        good[0],
        ["s.geojson", "no labelled pixel"],
        rows=["good.tif,s.geojson,scribbles,train,"],
        stderr_needles=["1 empty geometry: feature 0"],
    )


def test_scribble_image_with_colours_not_in_config(capsys, good):
    image = np.zeros((256, 320, 3), np.uint8)
    image[10:20, 10:100] = (0, 255, 0)
    image[50:60, 10:100] = (12, 34, 56)
    Image.fromarray(image).save(good[0] / "scr.png")
    fit(
        capsys,
        good[0],
        ["scr.png"],
        "--data.init_args.labels.scribble_colours",
        "{tubules: [0, 255, 0]}",
        rows=["good.tif,scr.png,scribbles,train,"],
    )


def test_scribble_growth_with_unknown_class(capsys, good):
    fit(
        capsys,
        good[0],
        ["data.labels.grow_classes", "Tubule", "fix the names"],
        "--data.init_args.labels.grow_um",
        "5",
        "--data.init_args.labels.grow_classes",
        "[Tubule]",
        rows=["good.tif,good.png,dense,train,"],
    )


# ---- validate / predict: checkpoints ----------------------------------------------------------------
@pytest.fixture
def checkpoint(tiny_slide_checkpoint):
    return tiny_slide_checkpoint  # (folder with good.tif and slides.csv, its checkpoint): conftest.py


def test_validate_with_a_file_that_is_not_a_checkpoint(capsys, checkpoint, tmp_path):
    folder, _ = checkpoint
    (tmp_path / "model.ckpt").write_text("not a checkpoint")
    expect_user_error(
        capsys,
        ["model.ckpt", "not a readable histoseg checkpoint"],
        "validate",
        "--config",
        TINY,
        "--data.init_args.slides",
        folder / "slides.csv",
        "--ckpt_path",
        tmp_path / "model.ckpt",
    )


def test_checkpoint_from_another_class_set(capsys, checkpoint, tmp_path):
    folder, ckpt = checkpoint
    data = torch.load(ckpt, weights_only=True)
    data["histoseg"]["classes"] = ["background", "cortex", "medulla", "glomeruli", "other"]
    torch.save(data, tmp_path / "other.ckpt")
    expect_user_error(
        capsys,
        ["other.ckpt", "does not fit"],
        "validate",
        "--config",
        TINY,
        "--data.init_args.slides",
        folder / "slides.csv",
        "--ckpt_path",
        tmp_path / "other.ckpt",
    )


def test_resume_last_without_checkpoint(capsys, checkpoint, tmp_path):
    folder, _ = checkpoint
    expect_user_error(
        capsys,
        ["no last.ckpt"],
        "fit",
        "--config",
        TINY,
        "--data.init_args.slides",
        folder / "slides.csv",
        "--ckpt_path",
        "last",
        "--trainer.default_root_dir",
        tmp_path,
    )


def test_predict_without_writer(capsys, checkpoint, tmp_path):
    folder, ckpt = checkpoint
    expect_user_error(
        capsys,
        ["SlideWriter"],
        "predict",
        "--config",
        TINY,
        "--data.init_args.slides",
        folder / "slides.csv",
        "--ckpt_path",
        ckpt,
        "--trainer.default_root_dir",
        tmp_path,
    )


# ---- quantify ----------------------------------------------------------------------------------------
def test_quantify_missing_checkpoint(capsys, good):
    expect_user_error(
        capsys,
        ["none.ckpt", "not found"],
        "quantify",
        "--ckpt_path",
        good[0] / "none.ckpt",
        "--slides",
        good[1],
        "--out",
        good[0] / "out",
    )
    assert not (good[0] / "out").exists()


def test_quantify_checkpoint_not_from_histoseg(capsys, good):
    torch.save({"state_dict": {}, "epoch": 3}, good[0] / "foreign.ckpt")
    expect_user_error(
        capsys,
        ["foreign.ckpt", "not a histoseg checkpoint"],
        "quantify",
        "--ckpt_path",
        good[0] / "foreign.ckpt",
        "--slides",
        good[1],
        "--out",
        good[0] / "out",
    )


def test_quantify_output_folder_not_writable(capsys, checkpoint, good):
    _, ckpt = checkpoint
    (good[0] / "afile").write_text("x")
    expect_user_error(
        capsys,
        ["afile", "folder"],
        "quantify",
        "--ckpt_path",
        ckpt,
        "--slides",
        good[1],
        "--out",
        good[0] / "afile" / "out",
    )


def test_quantify_glob_matching_nothing(capsys, checkpoint, good):
    _, ckpt = checkpoint
    expect_user_error(
        capsys,
        ["*.ndpi", "no slide files"],
        "quantify",
        "--ckpt_path",
        ckpt,
        "--slides",
        good[0] / "*.ndpi",
        "--out",
        good[0] / "out",
    )


def test_quantify_bad_overlap(capsys, checkpoint, good):
    _, ckpt = checkpoint
    expect_user_error(
        capsys,
        ["--overlap"],
        "quantify",
        "--ckpt_path",
        ckpt,
        "--slides",
        good[1],
        "--out",
        good[0] / "out",
        "--overlap",
        "1.5",
    )


def test_quantify_cohort_with_bad_files_reports_them_and_exits_1(capsys, checkpoint, tmp_path):
    _, ckpt = checkpoint
    slides = tmp_path / "slides"
    slides.mkdir()
    good_slide, _, _ = make_labelled_slide(slides, "fine", seed=1)
    (slides / "fine.png").unlink()
    data = good_slide.read_bytes()
    (slides / "broken.tif").write_bytes(data[: len(data) // 2])
    (slides / "readme.txt").write_text("not a slide")
    (slides / "zero.svs").write_bytes(b"")
    out = tmp_path / "out"
    status, lines, err = run(
        capsys, "quantify", "--ckpt_path", ckpt, "--slides", slides, "--out", out, "--no_progress"
    )
    assert status == 1 and "Traceback" not in err
    assert len(lines) == 3 and all(
        any(n in ln for n in ("broken.tif", "readme.txt", "zero.svs")) for ln in lines
    )
    report = json.loads((out / "report.json").read_text())
    status_by_slide = {s["slide"]: s["status"] for s in report["slides"]}
    assert status_by_slide == {
        "broken.tif": "failed",
        "fine.tif": "ok",
        "readme.txt": "failed",
        "zero.svs": "failed",
    }
    leftovers = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert leftovers == [
        "cohort.png",
        "fine.geojson",
        "fine.labels.tif",
        "fine.overlay.png",
        "index.html",
        "report.csv",
        "report.json",
    ]


def test_quantify_slide_names_cannot_escape_output_folder(capsys, checkpoint, tmp_path):
    _, ckpt = checkpoint
    slides = tmp_path / "in"
    slides.mkdir()
    for i, name in enumerate(["..evil", "a b&c;rm -rf"]):
        path, labels, _ = make_labelled_slide(slides, name, seed=i)
        labels.unlink()
    out = tmp_path / "deep" / "out"
    before = {p for p in tmp_path.rglob("*")}
    status, _, err = run(
        capsys, "quantify", "--ckpt_path", ckpt, "--slides", slides, "--out", out, "--no_progress"
    )
    assert status == 0, err[-2000:]
    created = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert created and all(p.parent == out for p in created)
    assert not any(p.name.startswith("..") for p in created if not p.name.endswith(".result.json"))


# ---- synthesize --------------------------------------------------------------------------------------
def test_synthesize_bad_option(capsys, tmp_path):
    status, _, err = run(capsys, "synthesize", "--out", tmp_path, "--n", "0")
    assert status == 2 and "Traceback" not in err and "error" in err
