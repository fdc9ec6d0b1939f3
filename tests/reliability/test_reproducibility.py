"""Determinism (same seed -> same metrics and weights) and Lightning DDP training on 2 CPU processes."""

import subprocess
import sys

import torch

from histoseg.inference.checkpoint import load_predictor
from tests.conftest import ROOT
from tests.test_configs import SMALL_SYNTHETIC, TINY_UNET, fit_tiny_kidney


def fit(root, *extra):
    logger = [
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(root),
    ]
    assert fit_tiny_kidney(root, *logger, *extra, train_batches=3, val_batches=2) == 0
    return next(root.rglob("last.ckpt")), (next(root.rglob("metrics.csv"))).read_text()


def test_same_seed_same_metrics_and_predictions(tmp_path):
    ckpt_a, metrics_a = fit(tmp_path / "a")
    ckpt_b, metrics_b = fit(tmp_path / "b")
    assert metrics_a == metrics_b
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        pa = load_predictor(ckpt_a).model(x)
        pb = load_predictor(ckpt_b).model(x)
    assert torch.equal(pa, pb)
    _, metrics_c = fit(tmp_path / "c", "--seed_everything", "1")
    assert metrics_c != metrics_a


def test_ddp_training_on_two_cpu_processes(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "histoseg",
            "fit",
            "--config",
            "configs/kidney.yaml",
            *SMALL_SYNTHETIC,
            *TINY_UNET,
            "--trainer.strategy",
            "ddp_find_unused_parameters_true",
            "--trainer.devices",
            "2",
            "--trainer.accelerator",
            "cpu",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.rglob("last.ckpt"))
    assert (
        "world_size=2" in result.stderr + result.stdout or "GLOBAL_RANK: 1" in result.stderr + result.stdout
    )
