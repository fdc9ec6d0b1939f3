"""datamodules.py: a slide-table source composed into SlideDataModule; plain hyperparameters."""

import torch

from histoseg.labels.table import read_slide_table


def test_synthetic_source_is_composed_and_hparams_stay_plain(tmp_path):
    """SyntheticKidneyDataModule is SlideDataModule + a SyntheticSlides source: same table, same
    options; the hyperparameters a checkpoint stores stay plain values (weights_only loads them)."""
    from histoseg.datamodules import SlideDataModule, SyntheticKidneyDataModule
    from histoseg.sources import SyntheticSlides
    from histoseg.training_options import PatchSampling

    source = SyntheticSlides(root=str(tmp_path), n_slides=2, width=384, height=256)
    composed = SyntheticKidneyDataModule(synthetic=source, mpp=2.0, patches=PatchSampling(patch_size=64))
    direct = SlideDataModule(synthetic=source, mpp=2.0, patches=PatchSampling(patch_size=64))
    table = composed.slide_table()
    assert table == direct.slide_table() == str(source.dataset_dir() / "table-dense-val1.csv")
    rows = read_slide_table(table)
    assert [(r.split, r.kind) for r in rows] == [("val", "dense"), ("train", "dense")]
    assert composed.mpp == 2.0 and composed.patches.patch_size == 64 and composed.synthetic is source
    assert composed.hparams["synthetic"] == {**source.__dict__}
    path = tmp_path / "hparams.pt"
    torch.save({"hparams": dict(composed.hparams)}, path)
    assert torch.load(path, weights_only=True)["hparams"]["synthetic"]["n_slides"] == 2
    assert [p.name for p in composed.predict_dataloader().dataset.paths] == [rows[0].slide.name]
