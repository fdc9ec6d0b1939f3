"""models/weights.py: encoder weights from a local file, matched by name else by position; one loader
and one error for both model families; ViT-S/16 and ViT-L/16 layouts saved locally (no download), every
key prefix and wrapper, ``.pth`` and ``.safetensors``, one warning line for missing/unexpected tensors, a
resampled position embedding, and one ``error:`` line naming the first tensor of another shape."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from histoseg.errors import ConfigError
from histoseg.models.classifiers import (
    EncoderPatchClassifier,
)
from histoseg.models.segmentation import build_segmentation_model
from histoseg.models.weights import load_encoder_weights, match_state_dict, read_state_dict, strip_prefix
from tests.conftest import ROOT, cli_exit_code, make_labelled_slide


def test_encoder_weights_from_local_file(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(4)
    source = timm.create_model("resnet18", pretrained=False, num_classes=7)  # with fc.* keys, ignored on load
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    clf = EncoderPatchClassifier("resnet18", patch_size=64, weights=str(path))
    loaded = clf.features.encoder.model.state_dict()
    assert torch.equal(loaded["conv1.weight"], source.state_dict()["conv1.weight"])
    assert torch.equal(loaded["layer4.1.bn2.running_var"], source.state_dict()["layer4.1.bn2.running_var"])

    with pytest.raises(ConfigError, match="not found"):
        EncoderPatchClassifier("resnet18", weights=str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        EncoderPatchClassifier("resnet18", weights=str(tmp_path / "junk.pt"))
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "partial.pt")
    with pytest.raises(ConfigError, match="only 1 of 120 encoder tensors match"):
        EncoderPatchClassifier("resnet18", weights=str(tmp_path / "partial.pt"))


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "encoder weights file not found"),
        (b"not a checkpoint", "cannot read encoder weights"),
        ({"epoch": 3}, "not a state dict of tensors"),
        ({"conv.weight": torch.zeros(2, 2)}, "only 0 of"),
    ],
)
def test_one_weights_loader_one_error_for_both_model_families(tmp_path: Path, content, message) -> None:
    """The same mistake in model.encoder_weights is the same ConfigError, naming the file and the
    option, whether the encoder belongs to a U-Net or to a patch classifier."""
    path = tmp_path / "weights.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    errors = []
    for build in (
        lambda: build_segmentation_model(3, encoder="resnet18", encoder_weights=str(path), encoder_depth=3,
                                         decoder_channels=(8, 8, 8)),
        lambda: EncoderPatchClassifier("resnet18", weights=str(path)),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=message) as info:
            build()
        errors.append(str(info.value))
    assert all(str(path) in e and "model.encoder_weights" in e for e in errors)
    assert re.sub(r"\d+", "N", errors[0]) == re.sub(r"\d+", "N", errors[1])


def test_weights_matched_by_name_else_by_position(tmp_path: Path) -> None:
    """Renamed tensors of the right shapes load by position (a head of another shape is skipped);
    same names load by name; the loaded count is returned."""
    torch.manual_seed(0)
    source = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(9, 7))
    renamed = {f"_block{i}": v for i, v in enumerate(source.state_dict().values())}
    target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    matched = match_state_dict(renamed, target.state_dict())
    assert list(matched) == list(target.state_dict())
    assert all(torch.equal(matched[k], source.state_dict()[k]) for k in target.state_dict())
    torch.save({"state_dict": renamed}, tmp_path / "wrapped.pt")
    assert load_encoder_weights(target, tmp_path / "wrapped.pt") == 7  # 2 conv + 5 BatchNorm tensors
    assert torch.equal(target[0].weight, source[0].weight)
    assert match_state_dict(source.state_dict(), target.state_dict()).keys() == target.state_dict().keys()

DPT = {"arch": "dpt", "encoder_depth": 4, "decoder_channels": (8, 8, 8, 8)}


@pytest.fixture(scope="module")
def vit_s() -> dict[str, torch.Tensor]:
    """A randomly initialised ViT-S/16 (timm vit_small_patch16_224, 224 px, no head), seed 0."""
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).state_dict()


def vit_l_on_meta() -> dict[str, torch.Tensor]:
    """The ViT-L/16 layout (timm vit_large_patch16_224 without head: 294 tensors, 304 M values) without its 1.2 GB."""
    import timm

    with torch.device("meta"):
        return timm.create_model("vit_large_patch16_224", pretrained=False, num_classes=0).state_dict()


def save(path, state, prefix="", wrapper=None):
    state = {prefix + k: v for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({wrapper: state, "epoch": 3} if wrapper else state, path)
    return path


@pytest.mark.parametrize(
    ("name", "prefix", "wrapper"),
    [
        ("timm.pth", "", None),
        ("lightning.ckpt", "model.", "state_dict"),
        ("ddp.pth", "module.", None),
        ("dino.pth", "encoder.", "model"),
        ("histoseg.ckpt", "network.net.encoder.model.", "state_dict"),
        ("timm.safetensors", "", None),
        ("backbone.safetensors", "backbone.", None),
    ],
)
def test_vit_s_layout_loads_whatever_the_prefix_and_format(tmp_path, caplog, vit_s, name, prefix, wrapper):
    """Loaded by name (the file lists its tensors in reverse order, which matching by position could not map)."""
    path = save(tmp_path / name, dict(reversed(vit_s.items())), prefix, wrapper)
    with caplog.at_level(logging.WARNING, "histoseg.models.weights"):
        net = build_segmentation_model(
            3, encoder="tu-vit_small_patch16_224", encoder_weights=str(path), input_size=224, **DPT
        )
    loaded = net.net.encoder.model.state_dict()
    assert loaded.keys() == vit_s.keys()
    assert all(torch.equal(loaded[k], v) for k, v in vit_s.items())
    assert not caplog.records  # nothing missing, nothing besides


def test_vit_l_layout_loads_into_a_vit_l_and_not_into_a_vit_s(tmp_path, caplog):
    """The real ViT-L/16 key layout and shapes, on the meta device (no memory): the whole file maps
    onto the ViT-L encoder through its 'model.' prefix; into a ViT-S it is an error naming the first
    tensor of another shape."""
    layout = vit_l_on_meta()
    assert len(layout) == 294 and sum(v.numel() for v in layout.values()) == 303_301_632
    path = save(tmp_path / "vit_l.pth", layout, "model.", "state_dict")
    with torch.device("meta"), caplog.at_level(logging.WARNING, "histoseg.models.weights"):
        net = build_segmentation_model(3, encoder="tu-vit_large_patch16_224", input_size=224, **DPT)
        assert load_encoder_weights(net.net.encoder.model, path) == 294
        assert not caplog.records
        with pytest.raises(ConfigError) as info:
            build_segmentation_model(
                3, encoder="tu-vit_small_patch16_224", encoder_weights=str(path), input_size=224, **DPT
            )
    assert str(info.value).startswith(
        f"{path}: tensor 'model.cls_token' has shape (1, 1, 1024) in the file but (1, 1, 384) in this encoder"
    )
    assert "; set model.encoder" in str(info.value) and "\n" not in str(info.value)


def test_missing_and_unexpected_tensors_are_one_warning_line(tmp_path, caplog, vit_s):
    state = {k: v for k, v in vit_s.items() if not k.startswith("norm.")}
    state |= {"head.weight": torch.zeros(1000, 384), "head.bias": torch.zeros(1000)}
    path = save(tmp_path / "vit.pth", state, "module.")
    with caplog.at_level(logging.WARNING, "histoseg.models.weights"):
        net = build_segmentation_model(
            3, encoder="tu-vit_small_patch16_224", encoder_weights=str(path), input_size=224, **DPT
        )
    [record] = caplog.records
    assert record.getMessage() == (
        f"{path}: loaded {len(vit_s) - 2} of {len(vit_s)} encoder tensors (key prefix 'module.' stripped); "
        "missing (left at their initial values): norm.weight, norm.bias; "
        "unexpected (ignored): module.head.weight, module.head.bias"
    )
    assert torch.equal(net.net.encoder.model.blocks[11].mlp.fc2.weight, vit_s["blocks.11.mlp.fc2.weight"])


def test_position_embedding_of_another_input_size_is_resampled(tmp_path, vit_s):
    """224 px weights (14 x 14 patches) for a 64 px ViT (4 x 4): the class token's embedding is kept,
    a grid embedding constant over positions stays that constant."""
    state = dict(vit_s)
    constant = torch.linspace(-1, 1, 384)
    state["pos_embed"] = torch.cat([vit_s["pos_embed"][:, :1], constant.expand(1, 196, 384)], dim=1)
    path = save(tmp_path / "vit.pth", state)
    net = build_segmentation_model(
        3, encoder="tu-vit_small_patch16_224", encoder_weights=str(path), input_size=64, **DPT
    )
    pos = net.net.encoder.model.pos_embed
    assert pos.shape == (1, 17, 384)
    assert torch.equal(pos[:, 0], vit_s["pos_embed"][:, 0])
    torch.testing.assert_close(pos[0, 1:], constant.expand(16, 384), atol=1e-5, rtol=0)


def test_strip_prefix_takes_the_prefix_most_names_are_under():
    target = {"a.w": 0, "b.w": 0, "w": 0}
    source = {f"net.encoder.model.{k}": torch.zeros(1) for k in ("a.w", "b.w", "w")} | {
        "net.decoder.w": torch.zeros(1)
    }
    assert strip_prefix(source, target)[0] == "net.encoder.model."
    assert strip_prefix({"a.w": torch.zeros(1), "b.w": torch.zeros(1)}, target)[0] == ""
    assert strip_prefix({"x.y": torch.zeros(1)}, target) == ("", {"x.y": torch.zeros(1)})


def test_wrappers_are_unwrapped_and_non_tensors_dropped(tmp_path):
    torch.save({"module": {"state_dict": {"w": torch.ones(2), "step": 3}}}, tmp_path / "nested.pth")
    assert list(read_state_dict(tmp_path / "nested.pth")) == ["w"]


def fit_error(capsys, tmp_path, *options) -> list[str]:
    make_labelled_slide(tmp_path, "s", seed=0)
    (tmp_path / "slides.csv").write_text("slide,labels,kind,split,mpp\ns.tif,s.png,dense,train,\n")
    args = ["fit", "--config", ROOT / "tests" / "conf" / "tiny.yaml", "--data.init_args.slides", tmp_path / "slides.csv",
            "--model.init_args.arch", "dpt", "--model.init_args.encoder_depth", "4",
            "--model.init_args.decoder_channels", "[8, 8, 8, 8]", "--trainer.default_root_dir", tmp_path / "run", *options]  # fmt: skip
    code = cli_exit_code(args)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
    assert code == 2 and len(lines) == 1, lines
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").rglob("*.ckpt"))
    return lines


def test_wrong_layout_is_one_error_line_naming_the_first_mismatched_key(capsys, tmp_path):
    path = save(tmp_path / "vit_l.pth", vit_l_on_meta(), "model.", "state_dict")
    [line] = fit_error(capsys, tmp_path, "--model.init_args.encoder", "tu-vit_small_patch16_224",
                       "--model.init_args.encoder_weights", path)  # fmt: skip
    assert line.startswith(
        f"error: {path}: tensor 'model.cls_token' has shape (1, 1, 1024) in the file but (1, 1, 384)"
    )


@pytest.mark.parametrize(
    ("content", "encoder", "needle"),
    [
        (b"a text file\n", "tu-vit_small_patch16_224", "cannot read encoder weights"),
        ({"epoch": 3, "note": "no tensors"}, "tu-vit_small_patch16_224", "not a state dict of tensors"),
        (
            None,
            "tu-vit_tiny_patch16_2240",
            "has no model 'vit_tiny_patch16_2240'; did you mean tu-vit_tiny_patch16_224?",
        ),
    ],
)
def test_user_mistakes_are_one_error_line(capsys, tmp_path, content, encoder, needle):
    options = ["--model.init_args.encoder", encoder]
    if content is not None:
        path = tmp_path / "weights.pth"
        path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
        options += ["--model.init_args.encoder_weights", path]
    [line] = fit_error(capsys, tmp_path, *options)
    assert needle in line and "; " in line, line
