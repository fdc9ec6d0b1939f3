"""histoseg/training_options.py: the option groups, declared once, and the map of the old flat names."""

import dataclasses
import inspect

import pytest

from histoseg.datamodules import SlideDataModule
from histoseg.labels.grid import GridOptions, LabelOptions
from histoseg.training_options import (
    MOVED_OPTIONS,
    OPTION_GROUPS,
    Augmentation,
    LoaderOptions,
    LossWeighting,
    PatchSampling,
    as_plain,
    group_options,
)

# The 27 flat data options of histoseg before the groups (SlideDataModule.__init__ of 0.x).
FLAT_BEFORE = """value_map white_value_map patch_size batch_size patches_per_epoch val_patches class_balanced
centered class_weighting border_w0 border_sigma_um border_object_classes brush_um point_radius_um augment
color_jitter stain_jitter num_workers prefetch_factor persistent_workers pin_memory scribble_colours
scribble_grow_um scribble_grow_classes""".split()


def test_every_flat_option_of_before_has_one_place_in_a_group():
    assert set(MOVED_OPTIONS) == set(FLAT_BEFORE)
    places = set(MOVED_OPTIONS.values())
    assert len(places) == len(FLAT_BEFORE)  # no two old names share a place
    fields = {f"{g}.{f.name}" for g, kind in OPTION_GROUPS.items() for f in dataclasses.fields(kind)}
    assert places == fields  # and every group field was a flat option once
    assert MOVED_OPTIONS["augment"] == "augmentation.enabled"
    assert MOVED_OPTIONS["scribble_grow_um"] == "labels.grow_um"
    assert MOVED_OPTIONS["brush_um"] == "labels.brush_um"


def test_datamodule_takes_groups_and_a_few_scalars():
    params = [p for p in inspect.signature(SlideDataModule.__init__).parameters if p != "self"]
    assert params == [
        "slides", "synthetic", "classes", "mpp", "labels", "patches", "weighting", "augmentation", "loader",
        "seed", "predict_slides",
    ]  # fmt: skip
    for group, kind in OPTION_GROUPS.items():
        assert inspect.signature(SlideDataModule.__init__).parameters[group].annotation in (kind, kind.__name__)


def test_groups_are_plain_in_the_hyper_parameters():
    dm = SlideDataModule(patches=PatchSampling(patch_size=96), labels=LabelOptions(brush_um=3.0))
    assert dm.hparams["patches"] == dataclasses.asdict(PatchSampling(patch_size=96))
    assert dm.hparams["labels"]["brush_um"] == 3.0 and dm.hparams["loader"]["num_workers"] == 0
    assert all(isinstance(dm.hparams[g], dict) for g in OPTION_GROUPS)
    assert as_plain(None) is None and as_plain(Augmentation()) == {
        "enabled": True, "color_jitter": 0.05, "stain_jitter": 0.0
    }  # fmt: skip


def test_group_options_puts_flat_names_into_their_groups():
    args = group_options(slides="t.csv", mpp=0.5, patch_size=128, num_workers=3, augment=False, border_w0=5.0)
    assert args == {
        "slides": "t.csv",
        "mpp": 0.5,
        "patches": PatchSampling(patch_size=128),
        "loader": LoaderOptions(num_workers=3),
        "augmentation": Augmentation(enabled=False),
        "weighting": LossWeighting(border_w0=5.0),
    }
    dm = SlideDataModule(**group_options(batch_size=2, scribble_grow_classes=["tubules"]))
    assert dm.patches.batch_size == 2 and dm.labels.grow_classes == ["tubules"]


def test_grid_options_put_the_label_options_on_a_grid():
    labels = LabelOptions(brush_um=3.0, grow_um=4.0, grow_classes=["glomeruli", "nope", "tubules"])
    grid = GridOptions.on_grid(labels, ["background", "tubules", "glomeruli"], 0.5, margin_px=64)
    assert (grid.brush_um, grid.grow_um, grid.mpp, grid.margin_px) == (3.0, 4.0, 0.5, 64)
    assert grid.grow_class_indices() == [2, 1]  # unknown names skipped
    assert GridOptions(classes=["a"], mpp=1.0).grow_class_indices() is None
    with pytest.raises(TypeError):
        GridOptions(["a"], 1.0)  # the grid's own fields are keywords: no positional mix-up with labels


def test_the_stored_hyper_parameters_build_the_same_datamodule(tmp_path):
    """``SlideDataModule(**hparams)`` (what ``load_from_checkpoint`` does) gives back the groups."""
    from histoseg.sources import SyntheticSlides

    source = SyntheticSlides(root=str(tmp_path), n_slides=2)
    dm = SlideDataModule(synthetic=source, patches=PatchSampling(patch_size=96), augmentation=Augmentation(False))
    again = SlideDataModule(**dict(dm.hparams))
    assert again.patches == dm.patches and again.augmentation == Augmentation(enabled=False)
    assert again.synthetic == source and again.loader == LoaderOptions()
