"""inference/predictor.py: the Predictor seam's derived properties."""

from torch import nn

from histoseg.inference.predictor import Predictor


def test_defaults_blend_and_class_count():
    seg = Predictor(nn.Identity(), ["glass", "tissue", "other"], mpp=1.0)
    assert seg.num_classes == 3 and seg.default_blend == "gaussian"
    assert (seg.tile_size, seg.margin, seg.size_multiple, seg.background_class) == (512, 32, 32, 0)
    patch = Predictor(nn.Identity(), ["a", "b"], mpp=2.0, metadata={"task": "patch_classification"})
    assert patch.default_blend == "crop" and patch.num_classes == 2
    assert seg.metadata == {} and seg.metadata is not Predictor(nn.Identity(), [], 1.0).metadata
