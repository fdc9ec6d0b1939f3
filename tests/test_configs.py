"""One end-to-end run per config in configs/ (fast_dev_run, tiny network, tiny synthetic slides)."""

import subprocess
import sys

import pytest
from conftest import FLASH, ROOT, cli_exit_code

SMALL_SYNTHETIC = [
    "--data.init_args.synthetic.n_slides",
    "2",
    "--data.init_args.synthetic.width",
    "1024",
    "--data.init_args.synthetic.height",
    "768",
    "--data.init_args.loader.num_workers",
    "0",
]
TINY_UNET = [
    "--model.init_args.encoder",
    "resnet18",
    "--model.init_args.encoder_weights",
    "null",
    "--model.init_args.encoder_depth",
    "3",
    "--model.init_args.decoder_channels",
    "[16, 8, 8]",
]

TINY_CLASSIFIER = ["--model.init_args.widths", "[8, 16]", "--model.init_args.dense", "[16]"]


def cli(*args: str) -> int:
    return cli_exit_code(list(args))


def fit_tiny_kidney(root, *extra, train_batches=1, val_batches=1):
    """One short epoch of configs/kidney.yaml with the tiny U-Net on small synthetic slides; exit status."""
    return cli(
        "fit", "--config", str(ROOT / "configs/kidney.yaml"), *SMALL_SYNTHETIC, *TINY_UNET,
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(train_batches),
        "--trainer.limit_val_batches", str(val_batches), "--trainer.default_root_dir", str(root), *extra,
    )  # fmt: skip


def fast(tmp_path):
    return [
        "--trainer.fast_dev_run",
        "2",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.logger",
        "false",
    ]


def test_kidney_config_fast_dev_run(tmp_path):
    assert (
        cli(
            "fit",
            "--config",
            str(ROOT / "configs/kidney.yaml"),
            *SMALL_SYNTHETIC,
            *TINY_UNET,
            *fast(tmp_path),
        )
        == 0
    )


def test_kidney_grid_config_fast_dev_run(tmp_path):
    args = [
        "--config",
        str(ROOT / "configs/kidney_grid.yaml"),
        *SMALL_SYNTHETIC,
        *TINY_CLASSIFIER,
        "--data.init_args.patches.batch_size",
        "8",
    ]
    assert cli("fit", *args, *fast(tmp_path)) == 0


def test_kidney_scribbles_config_fine_tunes_from_a_checkpoint(tmp_path, tiny_kidney_root):
    start = tiny_kidney_root  # a short fit of configs/kidney.yaml (tests/conftest.py)
    ckpt = next(start.rglob("last.ckpt"))
    args = [
        "--config",
        str(ROOT / "configs/kidney_scribbles.yaml"),
        *SMALL_SYNTHETIC,
        *TINY_UNET,
        "--model.init_args.init_checkpoint",
        str(start / "**" / "last.ckpt"),
    ]
    assert cli("fit", *args, *fast(tmp_path / "ft")) == 0
    # a checkpoint of another architecture cannot start this model: one-line error, exit 2
    other = ["--model.init_args.decoder_channels", "[32, 8, 8]"]
    assert cli("fit", *args, *other, *fast(tmp_path / "ft2")) == 2
    assert ckpt.exists()


def test_flash_config_fast_dev_run(tmp_path, monkeypatch):
    if not FLASH.exists():
        pytest.skip("../shared/data/flash-mouse-pas absent")
    monkeypatch.chdir(ROOT)
    assert cli("fit", "--config", "configs/flash.yaml", *TINY_UNET, *fast(tmp_path)) == 0


def test_must_show_kidney_fit_writes_checkpoint_under_root_dir(tmp_path):
    """The exact command of issue #2 with the default network (pretrained encoder when installed)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "histoseg",
            "fit",
            "--config",
            "configs/kidney.yaml",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "4",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--data.init_args.loader.num_workers",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.rglob("*.ckpt"))


def test_kidney_grid_checkpoint_runs_through_quantify(tmp_path):
    """Grid points -> patch classifier -> convolutionalized (a trous) -> the same slide report."""
    import csv

    root = tmp_path / "fit"
    args = [
        "--config",
        str(ROOT / "configs/kidney_grid.yaml"),
        *SMALL_SYNTHETIC,
        *TINY_CLASSIFIER,
        "--data.init_args.patches.batch_size",
        "16",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "3",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.logger",
        "false",
        "--trainer.default_root_dir",
        str(root),
    ]
    assert cli("fit", *args) == 0
    ckpt = next(root.rglob("*.ckpt"))
    from histoseg.synthetic import generate_dataset

    slide = generate_dataset(tmp_path / "slides", n_slides=1, seed=5, width=512, height=384)[0]
    out = tmp_path / "out"
    assert (
        cli(
            "quantify",
            "--ckpt_path",
            str(ckpt),
            "--slides",
            str(slide.image_path),
            "--out",
            str(out),
            "--tile_size",
            "192",
            "--no_progress",
        )
        == 0
    )
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert {r["class"] for r in rows} == {"background", "interstitium", "tubules", "glomeruli", "other"}
    assert sum(int(r["pixels"]) for r in rows) == 256 * 192  # the whole slide at 1 um/px is classified
