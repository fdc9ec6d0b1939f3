"""Classes 1 (check first, then write) and 6 (trainer options as users type them) of issue 15:
every bad option or value read ends in one ``error:`` line, exit 2, and no output folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT, make_labelled_slide, write_tiff_pyramid
from reliability_helpers import expect_one_error, library_logs_follow_capture, run, tiny_checkpoint  # noqa: F401

from histoseg.errors import ConfigError
from histoseg.labels.table import read_slide_table

TINY = str(ROOT / "tests" / "conf" / "tiny.yaml")


@pytest.fixture
def slide(tmp_path):
    path, labels, _ = make_labelled_slide(tmp_path, "s", seed=0)
    return tmp_path, path, labels


def quantify(folder, ckpt, *extra):
    return [
        "quantify",
        "--ckpt_path",
        ckpt,
        "--slides",
        folder / "s.tif",
        "--out",
        folder / "out",
        "--no_progress",
        *extra,
    ]


@pytest.mark.parametrize("value", ["0", "-0.5", "nan", "inf", "-inf", "0.01", "1000"])
def test_check_first_mpp_override(capsys, slide, value):
    folder = slide[0]
    ckpt = tiny_checkpoint(folder / "m.ckpt")
    line = expect_one_error(
        capsys,
        ["--mpp", "between 0.05 and 100 microns per pixel", "; "],
        *quantify(folder, ckpt, f"--mpp={value}"),
    )
    assert not (folder / "out").exists(), line


def test_check_first_mpp_override_far_coarser_than_the_model(capsys, slide):
    folder = slide[0]
    ckpt = tiny_checkpoint(folder / "m.ckpt", mpp=2.0)
    expect_one_error(capsys, ["--mpp 50", "upsampled 25x"], *quantify(folder, ckpt, "--mpp", "50"))
    assert not (folder / "out").exists()


@pytest.mark.parametrize("value", ["0", "-0.5", "nan", "inf", "1e-4", "500", "abc"])
def test_check_first_slide_table_mpp(tmp_path, value):
    table = tmp_path / "slides.csv"
    table.write_text(f"slide,mpp\ns.tif,0.5\ns.tif,{value}\n")
    with pytest.raises(ConfigError, match=r"slides.csv:3.*; "):
        read_slide_table(table)


@pytest.mark.parametrize("column", ["label_offset_x", "label_offset_y"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_check_first_label_offsets(tmp_path, column, value):
    table = tmp_path / "slides.csv"
    table.write_text(f"slide,{column}\ns.tif,{value}\n")
    with pytest.raises(ConfigError, match=rf"slides.csv:2: '{value}' is not a finite number; fix"):
        read_slide_table(table)


def fit_args(folder, *extra, table="slide,labels,split\ns.tif,s.png,train\ns.tif,s.png,val\n"):
    """``fit`` of the tiny config on ``folder/slides.csv`` (written from ``table``), plus ``extra``."""
    (folder / "slides.csv").write_text(table)
    return [
        "fit",
        "--config",
        TINY,
        "--data.init_args.slides",
        folder / "slides.csv",
        "--trainer.default_root_dir",
        folder / "run",
        *extra,
    ]


def test_check_first_slide_table_mpp_through_fit(capsys, slide):
    folder = slide[0]
    table = "slide,labels,split,mpp\ns.tif,s.png,train,nan\ns.tif,s.png,val,0.5\n"
    expect_one_error(capsys, ["slides.csv:2", "nan", "not a finite number"], *fit_args(folder, table=table))
    assert not list(folder.rglob("*.ckpt"))


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        ({"mpp": 0.0}, "mpp 0.0"),
        ({"mpp": float("nan")}, "mpp nan"),
        ({"mpp": -1.0}, "mpp -1.0"),
        ({"classes": ["background", "background", "x", "y", "z"]}, "distinct names"),
        ({"classes": ["background"]}, "2 to 255"),
        ({"patch_size": 0}, "patch_size 0"),
        ({"network": {**json.loads('{"num_classes": 5}'), "encoder_depth": 99}}, "network"),
    ],
)
def test_check_first_checkpoint_facts(capsys, slide, block, needle):
    folder = slide[0]
    ckpt = tiny_checkpoint(folder / "bad.ckpt", **block)
    expect_one_error(capsys, ["bad.ckpt", needle, "; use the .ckpt"], *quantify(folder, ckpt))
    assert not (folder / "out").exists()


@pytest.mark.parametrize(("variable", "value"), [("RANK", "abc"), ("WORLD_SIZE", "two"), ("RANK", "1.5")])
def test_check_first_rank_environment(capsys, slide, monkeypatch, variable, value):
    folder = slide[0]
    monkeypatch.setenv(variable, value)
    ckpt = tiny_checkpoint(folder / "m.ckpt")
    expect_one_error(capsys, [f"${variable}={value!r}", "not an integer"], *quantify(folder, ckpt))
    assert not (folder / "out").exists()


@pytest.mark.parametrize(("rank", "world"), [("2", "2"), ("-1", "2"), ("0", "0"), ("0", "-3")])
def test_check_first_rank_and_world_size(capsys, slide, rank, world):
    folder = slide[0]
    ckpt = tiny_checkpoint(folder / "m.ckpt")
    expect_one_error(
        capsys, ["--rank", "--world_size"], *quantify(folder, ckpt, "--rank", rank, "--world_size", world)
    )
    assert not (folder / "out").exists()


def test_check_first_slide_metadata_mpp_is_a_per_slide_status(capsys, tmp_path):
    """The slide's own (wrong) metadata is about that slide: listed in the report, the others go on."""
    image = np.full((128, 160, 3), 200, np.uint8)
    write_tiff_pyramid(tmp_path / "tiny_mpp.tif", image, mpp=0.02, levels=1)
    ckpt = tiny_checkpoint(tmp_path / "m.ckpt", mpp=2.0)
    status, lines, err = run(
        capsys,
        "quantify",
        "--ckpt_path",
        ckpt,
        "--slides",
        tmp_path / "tiny_mpp.tif",
        "--out",
        tmp_path / "out",
        "--no_progress",
    )
    assert status == 1 and "Traceback" not in err
    assert len(lines) == 1 and "0.02 microns per pixel (tiff-resolution) is outside 0.05-100" in lines[0]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["status"] for s in report["slides"]] == ["failed"]


@pytest.mark.parametrize(("mpp", "said"), [(0.001, "0.001"), (1e5, "100000")])
def test_messages_that_mislead_slide_metadata_mpp_named_with_its_value(capsys, tmp_path, mpp, said):
    """Issue 28, class 8: quantify tells a slide its metadata mpp is implausible, with the value."""
    write_tiff_pyramid(tmp_path / "odd.tif", np.full((128, 160, 3), 200, np.uint8), mpp=mpp, levels=1)
    ckpt = tiny_checkpoint(tmp_path / "m.ckpt", mpp=2.0)
    args = ["quantify", "--ckpt_path", ckpt, "--slides", tmp_path / "odd.tif", "--out", tmp_path / "out"]
    status, lines, err = run(capsys, *args, "--no_progress")
    assert status == 1 and "Traceback" not in err
    assert len(lines) == 1 and f"its metadata says {said} microns per pixel" in lines[0], err[-2000:]
    assert "no resolution" not in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["status"] for s in report["slides"]] == ["failed"]


# ---- class 6: trainer options ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--trainer.max_epochs", "-5", "trainer.max_epochs=-5"),
        ("--trainer.max_epochs", "0", "trainer.max_epochs=0"),
        ("--trainer.max_steps", "-5", "trainer.max_steps=-5"),
        ("--trainer.max_steps", "0", "trainer.max_steps=0"),
        ("--trainer.min_epochs", "-2", "trainer.min_epochs=-2"),
        ("--data.init_args.loader.num_workers", "-1", "data.loader.num_workers=-1"),
        ("--model.init_args.lr", "-1", "model.lr=-1"),
        ("--model.init_args.lr", "0", "model.lr=0"),
        ("--model.init_args.lr", "nan", "invalid configuration"),  # jsonargparse refuses it
        ("--model.init_args.lr", "inf", "invalid configuration"),
        ("--model.init_args.lr", "10", "model.lr=10"),
    ],
)
def test_trainer_options(capsys, slide, option, value, needle):
    folder = slide[0]
    line = expect_one_error(capsys, [needle, "; "], *fit_args(folder, option, value))
    assert "Traceback" not in line
    assert not (folder / "run").exists()


def test_a_trainer_edge_value_max_epochs_no_limit(capsys, slide):
    """Issue 28, class 6: ``--trainer.max_epochs -1`` (Lightning's "no limit") trains (here until max_time)
    at a constant rate with one warning line, instead of an OverflowError from the cosine schedule."""
    folder = slide[0]
    no_limit = ("--trainer.max_epochs", "-1", "--trainer.max_time", "00:00:00:01")
    code, lines, err = run(capsys, *fit_args(folder, *no_limit))
    assert (code, lines) == (0, []), err[-3000:]
    assert "Traceback" not in err and "OverflowError" not in err
    warnings = [ln for ln in err.splitlines() if "trainer.max_epochs=-1 (no limit)" in ln]
    assert len(warnings) == 1 and "--trainer.max_steps N" in warnings[0], err[-3000:]
    assert list((folder / "run").rglob("*.ckpt"))


def test_trainer_options_default_root_dir_is_a_file(capsys, slide):
    folder = slide[0]
    (folder / "afile").write_text("mine")
    args = fit_args(folder)
    args[args.index("--trainer.default_root_dir") + 1] = folder / "afile" / "run"
    expect_one_error(capsys, ["trainer.default_root_dir", "afile is a file, not a folder"], *args)
    assert (folder / "afile").read_text() == "mine"
