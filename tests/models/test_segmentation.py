"""ViT encoders behind smp's DPT (issue 30, item 4): the one-line errors of a wrong encoder or
arch, the input geometry a ViT records, and a frozen-encoder fit + quantify end to end with a
locally saved ViT-S/16 state dict (no download), the checkpoint reloaded in a fresh process."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from histoseg.errors import ConfigError
from histoseg.models.segmentation import build_segmentation_model
from tests.conftest import ROOT, cli_exit_code, make_labelled_slide

VIT_S = "tu-vit_small_patch16_224"
SMALL_DPT = {"arch": "dpt", "encoder": VIT_S, "encoder_depth": 4, "decoder_channels": (8, 8, 8, 8)}


def test_dpt_vit_takes_its_fixed_input_and_records_it():
    torch.manual_seed(0)
    net = build_segmentation_model(3, input_size=64, **SMALL_DPT)
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    assert net.input_geometry == {
        "size": 64,
        "multiple": 32,
        "patch": 16,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    assert net.net.encoder.model.pos_embed.shape == (1, 1 + 4 * 4, 384)  # cls token + 4x4 patches
    unet = build_segmentation_model(3, encoder="resnet18", encoder_depth=3, decoder_channels=(8, 8, 8))
    assert (unet.input_geometry["size"], unet.input_geometry["multiple"], unet.input_geometry["patch"]) == (
        None,
        8,
        None,
    )
    dynamic = build_segmentation_model(
        3,
        input_size=64,
        encoder_kwargs={"dynamic_img_size": True},
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        **SMALL_DPT,
    )
    assert dynamic.input_geometry == {
        "size": None,
        "multiple": 32,
        "patch": 16,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    assert dynamic(torch.rand(1, 3, 64, 32)).shape == (1, 3, 64, 32)


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        (
            {"arch": "unet", "encoder_depth": 3, "decoder_channels": (8, 8, 8)},
            ["model.arch=unet", "set model.arch: dpt"],
        ),
        (
            {"encoder": "tu-vit_smal_patch16_224"},
            ["has no model 'vit_smal_patch16_224'", f"did you mean {VIT_S}?"],
        ),
        ({"encoder": "resnet18"}, ["model.encoder='resnet18'", "tu-<timm ViT name>"]),
        ({"encoder": "tu-resnet18"}, ["model.encoder='tu-resnet18'", "not one"]),
        ({"input_size": 80}, ["data.patches.patch_size=80: not a multiple of 32", "use 64 or 96"]),
        ({"encoder_kwargs": {"img_size": 224}}, ["model.encoder_kwargs.img_size", "data.patches.patch_size"]),
        ({"encoder_kwargs": {"colour": "red"}}, ["model.encoder_kwargs", "colour"]),
        ({"encoder_depth": 5, "decoder_channels": (8,) * 5}, ["model.encoder_depth=5", "1 to 4"]),
    ],
)
def test_vit_mistakes_are_one_line_errors(changes, needles):
    kwargs = {**SMALL_DPT, "input_size": 32, **changes}
    with pytest.raises(ConfigError) as info:
        build_segmentation_model(3, **kwargs)
    message = str(info.value)
    assert "\n" not in message and re.search(r": .+; .+", message), message
    for needle in needles:
        assert needle in message, message


def test_a_vit_without_dpt_fails_through_the_cli_in_one_line(capsys, tmp_path):
    make_labelled_slide(tmp_path, "s", seed=0)
    (tmp_path / "slides.csv").write_text("slide,labels,kind,split,mpp\ns.tif,s.png,dense,train,\n")
    code = cli_exit_code(
        ["fit", "--config", ROOT / "tests" / "conf" / "tiny.yaml", "--data.init_args.slides", tmp_path / "slides.csv",
         "--model.init_args.encoder", VIT_S, "--trainer.default_root_dir", tmp_path / "run"]
    )  # fmt: skip
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and "set model.arch: dpt" in lines[0], lines


def docs_snippet() -> str:
    """The YAML block of docs/encoders.md (the documented config, used as is below)."""
    text = (ROOT / "docs" / "encoders.md").read_text()
    return re.search(r"```yaml\n(.*?)```", text, re.S).group(1)


def test_vit_s_frozen_fit_then_quantify_in_a_fresh_process(tmp_path):
    """The docs' config with a ViT-S/16 saved locally in Lightning layout ('model.' prefix, 224 px
    position embedding): the frozen encoder ends the fit with exactly the file's weights (position
    embedding resampled to the 64 px patch), the decoder learned, the checkpoint records the input
    geometry, and quantify in a new interpreter tiles at 64 px and reports every class."""
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
    weights = tmp_path / "vit_small.pth"
    torch.save({"state_dict": {f"model.{k}": v for k, v in vit.state_dict().items()}}, weights)
    (tmp_path / "encoder.yaml").write_text(docs_snippet())
    for seed in (0, 1):
        make_labelled_slide(tmp_path, f"s{seed}", seed=seed)
    (tmp_path / "slides.csv").write_text(
        "slide,labels,kind,split,mpp\ns0.tif,s0.png,dense,train,\ns1.tif,s1.png,dense,val,\n"
    )
    args = ["fit", "--config", ROOT / "tests" / "conf" / "tiny.yaml", "--config", tmp_path / "encoder.yaml",
            "--data.init_args.slides", tmp_path / "slides.csv", "--data.init_args.patches.patch_size", "64",
            "--model.init_args.encoder_weights", weights, "--model.init_args.decoder_channels", "[16, 16, 16, 16]",
            "--trainer.limit_train_batches", "3", "--trainer.default_root_dir", tmp_path / "run"]  # fmt: skip
    assert cli_exit_code(args) == 0
    ckpt = next((tmp_path / "run").rglob("*.ckpt"))
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    block = checkpoint["histoseg"]
    assert block["network"]["arch"] == "dpt" and block["network"]["input_size"] == 64
    assert block["input"] == {
        "size": 64,
        "multiple": 32,
        "patch": 16,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    state = checkpoint["state_dict"]
    encoder = {
        k[len("network.net.encoder.model.") :]: v
        for k, v in state.items()
        if k.startswith("network.net.encoder.model.")
    }
    assert encoder.keys() == vit.state_dict().keys()
    for key, tensor in vit.state_dict().items():
        if key != "pos_embed":
            assert torch.equal(encoder[key], tensor), key  # loaded, then frozen
    assert encoder["pos_embed"].shape == (1, 1 + 4 * 4, 384)
    assert torch.equal(encoder["pos_embed"][:, 0], vit.pos_embed[:, 0])  # the class token's, kept
    fresh = build_segmentation_model(5, input_size=64, **{**SMALL_DPT, "decoder_channels": (16,) * 4})
    trainable = [n for n, _ in fresh.named_parameters() if not n.startswith("net.encoder.")]
    optimizer = checkpoint["optimizer_states"][0]
    assert sum(len(g["params"]) for g in optimizer["param_groups"]) == len(trainable) > 0  # the decoder alone
    assert all(float(s["exp_avg"].abs().sum()) > 0 for s in optimizer["state"].values())  # ... and it learned

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "histoseg", "quantify", "--ckpt_path", str(ckpt), "--slides", str(tmp_path / "s1.tif"),
         "--out", str(out), "--no_progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert {r["class"] for r in rows} >= set(block["classes"]) and all(r["status"] == "ok" for r in rows)
    assert json.loads((out / "report.json").read_text())["settings"]["tile_size"] == 64  # the ViT's input

    bad = subprocess.run(
        [sys.executable, "-m", "histoseg", "quantify", "--ckpt_path", str(ckpt), "--slides", str(tmp_path / "s1.tif"),
         "--out", str(tmp_path / "out2"), "--tile_size", "128", "--no_progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("error: ")]
    assert bad.returncode == 2 and len(errors) == 1 and "exactly 64 pixels" in errors[0], bad.stderr[-2000:]
    assert not (tmp_path / "out2" / "report.csv").exists()
