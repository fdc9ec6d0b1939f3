"""inference/health.py: the sanity checks that keep a broken model or slide from giving valid-looking areas."""

from types import SimpleNamespace

import pytest

from histoseg.inference.health import MAX_UPSAMPLING, prediction_problem, slide_problem


@pytest.mark.parametrize(
    ("counts", "status"),
    [((10, 1, 5, 5), "nonfinite_logits"), ((10, 0, 5, 0), "no_tissue"), ((0, 0, 0, 5), "no_tissue"),
     ((10, 0, 0, 5), "all_glass"), ((10, 0, 5, 5), None)],
)  # fmt: skip
def test_prediction_problem_known_answers(counts, status):
    problem = prediction_problem(*counts)
    assert (problem and problem[0]) == status
    if status == "nonfinite_logits":
        assert "in 1 of 10 tiles" in problem[1] and "lower model.lr" in problem[1]


def test_slide_problem_names_the_resolution_and_the_fix():
    def slide(mpp):
        return SimpleNamespace(mpp=mpp, mpp_source="TIFF tags")

    assert slide_problem(slide(0.5), 0.5) is None
    assert slide_problem(slide(MAX_UPSAMPLING * 0.5), 0.5) is None  # exactly the limit is allowed
    coarse = slide_problem(slide(8.5), 1.0)
    assert coarse.startswith("resolution 8.5 microns per pixel (TIFF tags) is 8x coarser than the model's 1")
    outside = slide_problem(slide(0.01), 0.5)
    assert "is outside 0.05-100" in outside and outside.endswith("(or mpp: in the slide table)")
