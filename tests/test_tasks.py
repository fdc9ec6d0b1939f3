"""Task wiring: the sparse-label regulariser in the loss, the learning-rate schedule, fine-tuning and
the one checkpoint-compatibility check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from histoseg.models.regularizers import crf_loss, entropy_loss
from histoseg.tasks import SegmentationTask


def small_task(**kwargs) -> SegmentationTask:
    return SegmentationTask(
        encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=[16, 8, 8], **kwargs
    )


@pytest.mark.parametrize("total", [1, 2, 3, 19, 20, 21, 40, 300])
def test_one_cycle_schedule_for_any_number_of_steps(total):
    """Warm-up to the peak rate then cosine decay, for every fit length (OneCycleLR divides by zero
    when the warm-up is one step: 20 steps at 5 %)."""
    task = small_task(lr=0.01)
    task.trainer = SimpleNamespace(estimated_stepping_batches=total)
    config = task.configure_optimizers()
    if total < 3:
        assert isinstance(config, torch.optim.Optimizer)
        return
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = rates.index(max(rates))
    assert max(rates) == pytest.approx(0.01)
    assert rates[0] == pytest.approx(0.001)
    assert 1 <= peak <= max(2, round(0.05 * total))
    assert rates[-1] < rates[peak] / 10
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :], strict=False))


def test_a_trainer_edge_value_no_limit_trains_at_a_constant_rate(caplog):
    """Issue 28, class 6: ``--trainer.max_epochs -1`` (no limit) gives an infinite fit length; the cosine
    schedule (OverflowError on int(inf)) falls back to the constant rate with one warning naming the fix."""
    task = small_task(lr=0.01)
    task.trainer = SimpleNamespace(estimated_stepping_batches=float("inf"))
    with caplog.at_level("WARNING", logger="histoseg"):
        config = task.configure_optimizers()
    assert isinstance(config, torch.optim.Optimizer)
    assert config.param_groups[0]["lr"] == pytest.approx(0.01)
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "constant lr=0.01" in record.getMessage() and "--trainer.max_steps N" in record.getMessage()


def test_regularizer_reaches_the_training_loss_only():
    """regularizer=crf adds w x crf_loss(logits, image), entropy w x the entropy of the unlabelled
    pixels, in training only."""
    torch.manual_seed(2)
    image = torch.rand(1, 3, 16, 16)
    mask = torch.full((1, 16, 16), 255)
    mask[0, :4] = 1
    batch = {"image": image, "mask": mask}
    logits = torch.randn(1, 4, 16, 16)
    plain = small_task()
    base = float(plain.compute_loss(logits, batch))
    for name, expected in (("crf", crf_loss(logits, image)), ("entropy", entropy_loss(logits, mask == 255))):
        task = small_task(regularizer=name, regularizer_weight=0.5)
        task.train()
        assert float(task.compute_loss(logits, batch)) == pytest.approx(
            base + 0.5 * float(expected), rel=1e-6
        )
        task.eval()
        assert float(task.compute_loss(logits, batch)) == pytest.approx(base, rel=1e-6)


@pytest.mark.parametrize("option", ["consistency_weight", "consistency_threshold", "crf_downsample"])
def test_pruned_options_are_gone(option):
    """Options measured to give no gain were removed; a config naming one fails to parse."""
    import inspect

    assert option not in inspect.signature(SegmentationTask.__init__).parameters
    with pytest.raises(TypeError, match=option):
        small_task(**{option: 1})


def save_checkpoint(task, path, **block):
    """A histoseg checkpoint of ``task`` as Lightning writes it (state_dict + histoseg block)."""
    state = {f"network.{k}": v for k, v in task.network.state_dict().items()}
    torch.save({"state_dict": state, "histoseg": {**task.histoseg_block(), **block}}, path)
    return path


def test_fine_tuning_into_fewer_classes_keeps_all_but_the_head(tmp_path):
    """init_checkpoint from a 5-class checkpoint into a 3-class model: every tensor but the head is
    copied exactly; the head keeps its fresh initialisation (other shape)."""
    torch.manual_seed(3)
    source = small_task()
    path = save_checkpoint(source, tmp_path / "five.ckpt")
    tuned = small_task(classes=["background", "tubules", "other"], init_checkpoint=str(path))
    src, dst = source.network.state_dict(), tuned.network.state_dict()
    head = [k for k in dst if k.startswith("net.segmentation_head")]
    assert head and all(dst[k].shape != src[k].shape for k in head if dst[k].dim())
    assert all(torch.equal(dst[k], src[k]) for k in dst if k not in head)
    same = small_task(init_checkpoint=str(path))
    assert all(torch.equal(v, src[k]) for k, v in same.network.state_dict().items())


@pytest.mark.parametrize("splits", [("train",), ("train", "val")])
def test_fit_without_validation_slides_keeps_the_last_checkpoint(tmp_path, splits):
    """No val rows: no validation loop, ModelCheckpoint(monitor=val_dice) stops monitoring (else warnings)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from histoseg.datamodules import SlideDataModule
    from histoseg.lightning_cli import HistosegCLI
    from tests.conftest import make_labelled_slide

    make_labelled_slide(tmp_path, "a", seed=0)
    table = tmp_path / "slides.csv"
    table.write_text("slide,labels,split\n" + "".join(f"a.tif,a.png,{split}\n" for split in splits))
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val_dice", mode="max", save_last=True)
    latest = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_last=False)
    cli = SimpleNamespace(
        datamodule=SlideDataModule(slides=str(table)),
        trainer=SimpleNamespace(checkpoint_callbacks=[best, latest], limit_val_batches=1.0),
    )
    HistosegCLI._checkpoints_without_validation(cli)  # type: ignore[arg-type]
    if "val" in splits:
        assert (best.monitor, best.save_top_k, latest.monitor) == ("val_dice", 1, "val_loss")
        assert cli.trainer.limit_val_batches == 1.0
    else:
        # last.ckpt only, written every epoch (issue 28: save_top_k=0 wrote it only when the fit ended)
        assert (best.monitor, best.save_top_k, best.save_last, best.filename) == (None, 1, False, "last")
        assert (latest.monitor, latest.save_top_k) == (None, 1)  # the newest epoch
        assert cli.trainer.limit_val_batches == 0  # no empty validation loop


def test_frozen_encoder_stays_in_eval_mode_and_keeps_its_statistics():
    """freeze_encoder: the decoder is trained alone, so Lightning's train() leaves the encoder in eval
    mode and a training forward pass changes none of its BatchNorm running statistics."""
    torch.manual_seed(0)
    task = small_task(freeze_encoder=True)
    before = {k: v.clone() for k, v in task.network.net.encoder.state_dict().items()}
    task.train()
    assert not any(m.training for m in task.network.net.encoder.modules())
    assert task.network.net.decoder.training
    task(torch.rand(2, 3, 64, 64)).sum().backward()
    after = task.network.net.encoder.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert small_task().train().network.net.encoder.training  # not frozen: trains as usual


def test_vit_task_records_its_input_geometry_and_normalisation():
    """arch dpt: the ViT's fixed input (data.patch_size), the multiple and the encoder's mean/std go
    into the network description and the checkpoint's input block; mean without std is refused."""
    from histoseg.errors import ConfigError

    vit = {
        "arch": "dpt",
        "encoder": "tu-vit_small_patch16_224",
        "encoder_depth": 4,
        "decoder_channels": [8] * 4,
    }
    task = SegmentationTask(patch_size=64, encoder_mean=[0.5] * 3, encoder_std=[0.25] * 3, **vit)
    block = task.histoseg_block()
    assert block["network"]["input_size"] == 64 and block["network"]["mean"] == [0.5] * 3
    assert block["input"] == {"size": 64, "multiple": 32, "patch": 16, "mean": [0.5] * 3, "std": [0.25] * 3}
    assert "mean" not in small_task().network_config()  # unchanged description for CNN checkpoints
    with pytest.raises(ConfigError, match="model.encoder_mean and model.encoder_std: one is set"):
        SegmentationTask(patch_size=64, encoder_mean=[0.5] * 3, **vit)


def test_vit_checkpoint_gives_a_predictor_of_its_fixed_input_size(tmp_path):
    """load_predictor: a ViT checkpoint tiles at its input size whatever tile is asked (the option check
    then refuses another), a U-Net at 512 px; a damaged input block is a CheckpointError."""
    from histoseg.errors import CheckpointError, ConfigError
    from histoseg.inference.checkpoint import load_predictor
    from histoseg.inference.options import InferenceOptions

    vit = {
        "arch": "dpt",
        "encoder": "tu-vit_small_patch16_224",
        "encoder_depth": 4,
        "decoder_channels": [8] * 4,
    }
    path = save_checkpoint(SegmentationTask(patch_size=64, **vit), tmp_path / "vit.ckpt")
    predictor = load_predictor(path, tile_size=256)
    assert (predictor.tile_size, predictor.input_size, predictor.size_multiple, predictor.margin) == (
        64,
        64,
        32,
        8,
    )
    assert InferenceOptions().resolve(predictor).tile_size == 64
    with pytest.raises(
        ConfigError, match=r"tile_size=256: this model takes tiles of exactly 64 pixels.*; drop"
    ):
        InferenceOptions(tile_size=256).resolve(predictor)
    unet = load_predictor(save_checkpoint(small_task(), tmp_path / "unet.ckpt"))
    assert (unet.tile_size, unet.input_size, unet.size_multiple) == (512, None, 8)
    with pytest.raises(CheckpointError, match="input .* must give the input size and multiple"):
        load_predictor(
            save_checkpoint(small_task(), tmp_path / "bad.ckpt", input={"size": "big", "multiple": 8})
        )
