"""InferenceOptions: validated once, one-line errors naming the option, zero means zero."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from histoseg.errors import ConfigError
from histoseg.inference.options import InferenceOptions, add_arguments, from_arguments
from histoseg.inference.predictor import Predictor

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]


def predictor(**kwargs) -> Predictor:
    defaults = {"tile_size": 256, "margin": 16, "size_multiple": 32}
    return Predictor(torch.nn.Conv2d(3, 5, 1), list(CLASSES), mpp=1.0, **{**defaults, **kwargs})


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"tile_size": 0}, "tile_size=0: must be between 1 and 8192"),
        ({"tile_size": -64}, "tile_size=-64"),
        ({"tile_size": 100_000}, "tile_size=100000"),
        ({"overlap": 1.0}, "overlap=1.0: must be in [0, 1)"),
        ({"overlap": -0.1}, "overlap=-0.1"),
        ({"overlap": math.nan}, "overlap=nan: must be a finite number"),
        ({"margin": -1}, "margin=-1: must be >= 0"),
        ({"batch_size": 0}, "batch_size=0: must be at least 1"),
        ({"workers": -1}, "workers=-1"),
        ({"blend": "average"}, "blend='average'"),
        ({"precision": "fp8"}, "precision='fp8': use one of auto, 32, bf16, 16"),
        ({"device": "gpu"}, "device='gpu': unknown torch device"),
        ({"tile_size": 64.5}, "tile_size=64.5: must be an integer"),
        ({"tta": "yes"}, "tta='yes'"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_option(changes: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        InferenceOptions(**changes)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_is_refused() -> None:
    with pytest.raises(ConfigError, match="device='cuda:1': CUDA is not available"):
        InferenceOptions(device="cuda:1")


def test_zero_means_zero_and_none_means_the_models() -> None:
    zero = InferenceOptions(overlap=0.0, margin=0, workers=0, blend="crop").resolve(predictor())
    assert (zero.overlap, zero.margin, zero.workers, zero.tile_size) == (0.0, 0, 0, 256)
    auto = InferenceOptions().resolve(predictor())
    assert (auto.tile_size, auto.margin, auto.blend) == (256, 16, "gaussian")
    patch = InferenceOptions().resolve(predictor(metadata={"task": "patch_classification"}))
    assert patch.blend == "crop"
    assert auto.resolved and not InferenceOptions().resolved
    assert auto.resolve(predictor()) == auto  # resolving again changes nothing


def test_model_dependent_checks_at_resolve() -> None:
    with pytest.raises(
        ConfigError, match=r"tile_size=100: must be a positive multiple of 32 for this model; e.g. 96"
    ):
        InferenceOptions(tile_size=100).resolve(predictor())
    with pytest.raises(ConfigError, match="margin=128: must be less than half the tile"):
        InferenceOptions(margin=128, blend="crop").resolve(predictor())
    InferenceOptions(margin=128, blend="gaussian").resolve(predictor())  # margin unused by Gaussian blending
    with pytest.raises(ConfigError, match="one batch would need 24.0 GiB"):
        InferenceOptions(tile_size=8192, batch_size=12).resolve(predictor())


def test_frozen() -> None:
    options = InferenceOptions()
    with pytest.raises(AttributeError):
        options.overlap = 0.1  # type: ignore[misc]
    assert options.replace(overlap=0.25).overlap == 0.25
    with pytest.raises(ConfigError, match="overlap"):
        options.replace(overlap=2.0)


def test_parser_builds_the_options_and_names_the_flag() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parsed = parser.parse_args(
        ["--tile_size", "128", "--overlap", "0", "--precision", "bf16", "--tta", "--no_skip_glass"]
    )
    assert from_arguments(parsed) == InferenceOptions(
        tile_size=128, overlap=0.0, precision="bf16", tta=True, skip_glass=False
    )
    assert from_arguments(parser.parse_args([])) == InferenceOptions()
    with pytest.raises(ConfigError, match=r"^--batch_size=0: must be at least 1"):
        from_arguments(parser.parse_args(["--batch_size", "0"]))


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--tile_size", "0"], "error: --tile_size=0: must be between 1 and 8192 pixels"),
        (["--batch_size", "0"], "error: --batch_size=0: must be at least 1"),
        (["--overlap", "nan"], "error: --overlap=nan: must be a finite number"),
        (["--workers", "-2"], "error: --workers=-2: must be >= 0"),
        (["--device", "tpu"], "error: --device='tpu': unknown torch device"),
    ],
)
def test_quantify_rejects_bad_options_before_reading_anything(
    tmp_path, capsys: pytest.CaptureFixture[str], flags: list[str], needle: str
) -> None:
    from histoseg.cli import main

    out = tmp_path / "out"
    argv = [
        "quantify",
        "--ckpt_path",
        str(tmp_path / "missing.ckpt"),
        "--slides",
        str(tmp_path),
        "--out",
        str(out),
    ]
    with pytest.raises(SystemExit) as info:
        main([*argv, *flags])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith(needle), err
    assert not out.exists()  # checked before the checkpoint is read or anything is written
