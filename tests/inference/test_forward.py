"""precision: explicit choices, ``auto`` checked once per run against fp32, the choice in the report."""

from __future__ import annotations

import json
import logging
import logging.handlers
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import histoseg.inference.forward as forward
from histoseg.inference.forward import AGREEMENT_MIN, compare_labels
from histoseg.inference.options import InferenceOptions
from histoseg.inference.predict import predict_slide
from histoseg.inference.predictor import Predictor
from histoseg.quantify import run_quantify
from tests.inference.test_predict import CLASSES, make_truth, oracle_predictor, write_slide


class Fragile(nn.Module):
    """Interstitium beats background by 1e-3 on every pixel: true in fp32, a tie (class 0) in bf16.

    bfloat16 has 8 significant bits, so ``r + 1e-3`` rounds to ``r`` for red values r near 0.9.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
            self.conv.weight[1, 0] = 1.0
            self.conv.bias.copy_(torch.tensor([0.0, 1e-3, -10.0, -10.0, -10.0]))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += x.shape[0]
        return self.conv(x)


def red_slide(path: Path) -> Path:
    truth = make_truth(100, 130)
    path = write_slide(path, truth)
    return path


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CPU look like one with AMX (bf16 pays) (this test machine's answer must not matter)."""
    monkeypatch.setattr(forward, "cpu_has_amx", lambda: True)


def test_compare_labels_known_answer() -> None:
    a = torch.tensor([[0, 1, 1, 2]])
    b = torch.tensor([[0, 1, 2, 2]])
    agreement, diff = compare_labels(a, b, 3)
    assert agreement == 0.75 and diff == pytest.approx(0.25)  # class 1: 2/4 vs 1/4


def test_auto_keeps_bf16_when_it_agrees(tmp_path: Path, native_bf16: None) -> None:
    truth = make_truth(100, 130)
    slide = write_slide(tmp_path / "s.tif", truth)
    result = predict_slide(slide, oracle_predictor(), InferenceOptions(batch_size=3), progress=False)
    np.testing.assert_array_equal(np.asarray(result.labels), truth)
    assert result.precision == "bf16" and result.channels_last
    check = result.precision_check
    assert check is not None and check["kept"] and check["agreement"] == 1.0 and check["tiles"] == 3


def test_auto_falls_back_to_fp32_with_one_log_line(tmp_path: Path, native_bf16: None) -> None:
    slide = red_slide(tmp_path / "s.tif")
    model = Fragile()
    predictor = Predictor(model, list(CLASSES), mpp=1.0, tile_size=64, margin=8)
    logger = logging.getLogger("histoseg")
    for name in list(logging.root.manager.loggerDict):  # a library's dictConfig may have disabled them
        if name.startswith("histoseg"):
            logging.getLogger(name).disabled = False
    handler = logging.handlers.BufferingHandler(100)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not .level =: it clears the cached isEnabledFor answers
    try:
        result = predict_slide(slide, predictor, InferenceOptions(skip_glass=False), progress=False)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert result.precision == "32" and not result.channels_last
    check = result.precision_check
    assert check is not None and not check["kept"] and check["agreement"] < AGREEMENT_MIN
    lines = [r.getMessage() for r in handler.buffer if "precision auto" in r.getMessage()]
    assert len(lines) == 1 and "using fp32" in lines[0]
    # fp32 everywhere: every pixel is interstitium (bias 1e-3 wins); the checked batch ran twice.
    assert (np.asarray(result.labels) == 1).all()
    assert model.calls == result.tiles_run + check["tiles"]


def test_explicit_bf16_runs_bf16_without_check(tmp_path: Path) -> None:
    slide = red_slide(tmp_path / "s.tif")
    predictor = Predictor(Fragile(), list(CLASSES), mpp=1.0, tile_size=64, margin=8)
    result = predict_slide(
        slide, predictor, InferenceOptions(precision="bf16", skip_glass=False), progress=False
    )
    assert result.precision == "bf16" and result.precision_check is None
    assert (np.asarray(result.labels) == 0).mean() > 0.5  # the tie: what auto would have caught


def test_without_amx_auto_runs_fp32_channels_last_checked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AVX512-BF16 without AMX computes bf16 no faster: auto keeps fp32 and takes channels-last only."""
    monkeypatch.setattr(forward, "cpu_has_amx", lambda: False)
    slide = red_slide(tmp_path / "s.tif")
    model = Fragile()
    predictor = Predictor(model, list(CLASSES), mpp=1.0, tile_size=64, margin=8)
    result = predict_slide(slide, predictor, InferenceOptions(skip_glass=False), progress=False)
    assert result.precision == "32" and result.channels_last
    check = result.precision_check
    assert check is not None and check["kept"] and check["candidate"] == "32" and check["channels_last"]
    assert check["agreement"] == 1.0 and check["area_diff"] == 0.0
    assert (np.asarray(result.labels) == 1).all()  # fp32 keeps the 1e-3 margin that bf16 rounds away
    assert model.calls == result.tiles_run + check["tiles"]  # the checked batch ran twice, once


@pytest.mark.parametrize(
    ("device", "amx", "expected"),
    [("cpu", True, ("bf16", True)), ("cpu", False, ("32", True)), ("mps", True, ("32", False))],
)
def test_auto_candidate_per_device(
    monkeypatch: pytest.MonkeyPatch, device: str, amx: bool, expected: tuple[str, bool]
) -> None:
    monkeypatch.setattr(forward, "cpu_has_amx", lambda: amx)
    assert forward.candidate(torch.device(device)) == expected


def test_auto_on_a_device_without_candidate_is_fp32_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the candidate is the reference itself (MPS, other devices) nothing is checked."""
    monkeypatch.setattr(forward, "candidate", lambda device: ("32", False))
    model = Fragile()
    runner = forward.TileRunner(model, 5, torch.device("cpu"), "auto")
    assert runner.precision == "32" and not runner.channels_last
    runner(np.zeros((2, 8, 8, 3), dtype=np.uint8))
    assert runner.check is None and model.calls == 2


def test_cohort_checks_once_and_reports_the_precision_used(tmp_path: Path, native_bf16: None) -> None:
    slides = tmp_path / "slides"
    slides.mkdir()
    for seed in (0, 1):
        write_slide(slides / f"s{seed}.tif", make_truth(100, 130, seed=seed))
    out = tmp_path / "out"
    assert run_quantify(oracle_predictor(), str(slides), out, progress=False) == 0
    results = [json.loads((out / f".s{seed}.result.json").read_text()) for seed in (0, 1)]
    assert [r["precision"] for r in results] == ["bf16", "bf16"]
    assert results[0]["precision_check"]["kept"] and results[1]["precision_check"] is None
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["precision"] == "auto" and report["settings"]["precision_used"] == ["bf16"]
    assert {row["precision"] for row in report["rows"]} == {"bf16"}
    # A rerun reuses both slides: the requested precision ("auto") is the resume key, not the one used.
    assert run_quantify(oracle_predictor(), str(slides), out, progress=False) == 0


@pytest.mark.parametrize("precision", ["32", "bf16"])
def test_scores_reach_the_merger_contiguous_float32_whatever_the_memory_format(precision: str) -> None:
    """A channels-last network's logits come back as contiguous (N, C, T, T) float32, values unchanged."""
    torch.manual_seed(0)
    net = nn.Conv2d(3, 5, 3, padding=1)
    runner = forward.TileRunner(net, 5, torch.device("cpu"), precision, channels_last=True)
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    scores, _ = runner(images)
    assert scores.dtype == torch.float32 and scores.is_contiguous()
    x = (
        torch.from_numpy(images)
        .permute(0, 3, 1, 2)
        .float()
        .div(255.0)
        .contiguous(memory_format=torch.channels_last)
    )
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        reference = net.to(memory_format=torch.channels_last)(x).float()
    assert torch.equal(scores, reference)


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_input_buffer_is_reused_and_each_batch_scored_from_its_own_tiles(channels_last: bool) -> None:
    """One float input buffer per batch shape; a batch's scores never see the next batch's pixels."""
    torch.manual_seed(0)
    net = nn.Conv2d(3, 5, 3, padding=1)
    runner = forward.TileRunner(net, 5, torch.device("cpu"), "32", channels_last=channels_last)
    rng = np.random.default_rng(0)
    first, second = (rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8) for _ in range(2))
    last = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)  # the smaller last batch of a slide

    def alone(images: np.ndarray) -> torch.Tensor:
        return forward.TileRunner(net, 5, torch.device("cpu"), "32", channels_last=channels_last)(images)[0]

    expected = [alone(images) for images in (first, second, first, last)]
    got, pointers = [], set()
    for images in (first, second, first):
        got.append(runner(images)[0].clone())
        buffer = runner._input
        assert buffer is not None and buffer.shape == (3, 3, 16, 16)
        assert buffer.is_contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format
        )
        pointers.add(buffer.data_ptr())
    assert len(pointers) == 1  # the same memory for the three batches of the same shape
    got.append(runner(last)[0])
    assert runner._input is not None and runner._input.shape == (1, 3, 16, 16)
    for g, e in zip(got, expected, strict=True):
        assert torch.equal(g, e)


# -- training precision: histoseg fit without trainer.precision ----------------------------------
