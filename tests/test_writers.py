"""Slide prediction through Lightning's predict loop: one process, and DDP on 2 CPU processes (gloo)."""

import csv
import json
import subprocess
import sys

import pytest

from histoseg.cli import main
from tests.conftest import ROOT
from tests.test_configs import SMALL_SYNTHETIC, TINY_UNET


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_kidney_root):
    root = tiny_kidney_root
    slides = tmp_path_factory.mktemp("slides")
    from histoseg.synthetic import generate_dataset

    generate_dataset(slides, n_slides=2, seed=7, width=640, height=512)
    return next(root.rglob("last.ckpt")), slides


def predict_args(ckpt, slides, out):
    return [
        "predict",
        "--config",
        "configs/kidney.yaml",
        *SMALL_SYNTHETIC,
        *TINY_UNET,
        "--ckpt_path",
        str(ckpt),
        "--trainer.callbacks+=histoseg.writers.SlideWriter",
        "--trainer.callbacks.out",
        str(out),
        "--trainer.callbacks.options.tile_size",
        "128",
        "--trainer.logger",
        "false",
        "--data.init_args.predict_slides",
        str(slides / "synthetic_0[0-9].tif"),
    ]


def test_ddp_predict_two_processes_one_merged_report(trained, tmp_path):
    ckpt, slides = trained
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "histoseg",
            *predict_args(ckpt, slides, tmp_path / "out"),
            "--trainer.strategy",
            "ddp",
            "--trainer.devices",
            "2",
            "--trainer.accelerator",
            "cpu",
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert sorted({r["slide"] for r in rows}) == ["synthetic_00.tif", "synthetic_01.tif"]
    assert all(r["status"] == "ok" for r in rows)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["slides"]) == 2
    for stem in ("synthetic_00", "synthetic_01"):
        for suffix in (".labels.tif", ".geojson", ".overlay.png"):
            assert (tmp_path / "out" / f"{stem}{suffix}").is_file()


def test_predict_needs_a_writer_and_a_checkpoint(trained, tmp_path, monkeypatch, capsys):
    ckpt, slides = trained
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as info:
        main(
            [
                "predict",
                "--config",
                "configs/kidney.yaml",
                *SMALL_SYNTHETIC,
                *TINY_UNET,
                "--ckpt_path",
                str(ckpt),
                "--trainer.default_root_dir",
                str(tmp_path),
            ]
        )
    assert info.value.code == 2 and "SlideWriter" in capsys.readouterr().err
