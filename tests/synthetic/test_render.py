"""Golden pixels of the synthetic generator: a refactor of :mod:`histoseg.synthetic` must change no pixel.

The constants were recorded from the generator before it was split into stages (generator
version 1). A failure means the same parameters now paint different pixels: either a bug
in a refactor (restore the random draw order and the arithmetic) or an intended change of
the look, which must bump ``GENERATOR_VERSION`` (it invalidates cached datasets) and
re-record these hashes. The hashes are of the raw array bytes (C order), not of the TIFF
files, so they do not depend on the JPEG or Deflate encoder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from histoseg import KIDNEY_CLASSES
from histoseg.synthetic import GENERATOR_VERSION, StainParams, TissueParams, generate_dataset, render_slide

# name -> (render_slide keyword arguments, expected values)
GOLDEN = {
    # geometry grid = output grid (g = 1); fibrosis on: atrophic tubules, inflammatory cells;
    # shifted stain with a blur over 1 px (the Gaussian branch); every object kind present
    "fibrotic_1mpp": (
        {
            "seed": 0,
            "width": 640,
            "height": 512,
            "mpp": 1.0,
            "tissue": TissueParams(fibrosis=0.5),
            "stain": StainParams(hue_shift=12.0, saturation=1.2, brightness=0.9, blur_um=1.5),
        },
        {
            "image": "20f5872426eac6d654837b65535b25994b1d4ed632d7461967f8bd97468f24e6",
            "labels": "dfda7ec32104080e512570964f63fd519c75309cdb7a2ae15272ac916858e739",
            "instances": "0da7f9cedf4577d47723cd649112d7363a4a122624f2435e1c0c632c4750b2d9",
            "counts": [117875, 91939, 93355, 13620, 10891],
            "objects": {"tubules": 86, "glomeruli": 3, "arteries": 2, "veins": 2},
        },
    ),
    # default tissue and stain at 0.5 um/px (g = 2, the 3-tap blur)
    "healthy_half_mpp": (
        {"seed": 1, "width": 768, "height": 576, "mpp": 0.5},
        {
            "image": "0ad103b9610b05ba360b6c2d7347b16480137777c1f8071ded91de9d025effe2",
            "labels": "f66cb475f437d0b11113b64adbc210f078262a1e3911307cf1579cb1ae783480",
            "instances": "9da615bc3b32091852cc5300e07906fa0ce4de8902c33287ec685030a5dd334e",
            "counts": [163944, 71156, 161095, 18016, 28157],
            "objects": {"tubules": 31, "glomeruli": 1, "arteries": 2, "veins": 1},
        },
    ),
    # g = 4, no capsule strip, small tubules and glomeruli
    "no_capsule_quarter_mpp": (
        {
            "seed": 4,
            "width": 512,
            "height": 384,
            "mpp": 0.25,
            "tissue": TissueParams(
                capsule=False,
                glomeruli_per_mm2=30.0,
                tubule_radius_um=(8.0, 12.0),
                glomerulus_radius_um=(12.0, 16.0),
            ),
        },
        {
            "image": "6dc111c68cbbd9daffa6bad4a39081b4cdb17e662a65280fc653899d5f13d15c",
            "labels": "dc4548e7befa04f61b94918e9598f121a95512e5881596bdb2e59d5e6e46b11f",
            "instances": "352694bec254675da6f603d9e57e597b49f65e255ce70aad6c623be63e661b7b",
            "counts": [66966, 114096, 4577, 10969, 0],
            "objects": {"tubules": 5, "glomeruli": 1, "arteries": 0, "veins": 0},
        },
    ),
}

# generate_dataset(n_slides=3, seed=11, width=256, height=192, mpp=0.5): per slide
# (name, split, seed, class pixel counts, sha256 of the label map read back from its TIFF)
GOLDEN_DATASET = [
    (
        "synthetic_00",
        "train",
        1926383459,
        [15756, 7401, 23942, 0, 2053],
        "d5f49671789f2c8544e04aaeb5cf6d84d03898cb403bc661f758220097e1968e",
    ),
    (
        "synthetic_01",
        "val",
        592467769,
        [17010, 5159, 25586, 0, 1397],
        "fc09cad48f693d75a5ad404bc019cdac7c995c2bfcf5e01759654be2fafb2779",
    ),
    (
        "synthetic_02",
        "test",
        621272063,
        [15959, 6470, 25051, 0, 1672],
        "1f002455acfae37aa8f295bd5e671269706cee0e4523b652daccdd1282e3b153",
    ),
]
GOLDEN_SLIDES_CSV = "d2edab590b42740c1cfc5f1c9fa2ab7be28a5b414d84ecbf5cf450d1eee7f01d"


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_generator_version_is_the_one_the_hashes_were_recorded_with() -> None:
    assert GENERATOR_VERSION == 1


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_rendered_pixels_equal_the_recorded_ones(case: str) -> None:
    kwargs, expected = GOLDEN[case]
    slide = render_slide(**kwargs)
    shape = (kwargs["height"], kwargs["width"])
    assert slide.image.shape == (*shape, 3) and slide.image.dtype == np.uint8
    assert slide.labels.shape == shape and slide.labels.dtype == np.uint8
    assert slide.tubule_instances.shape == shape and slide.tubule_instances.dtype == np.int32
    assert np.bincount(slide.labels.ravel(), minlength=len(KIDNEY_CLASSES)).tolist() == expected["counts"]
    assert slide.objects == expected["objects"]
    assert _sha256(slide.labels) == expected["labels"]
    assert _sha256(slide.tubule_instances) == expected["instances"]
    assert _sha256(slide.image) == expected["image"]


def test_generated_dataset_equals_the_recorded_one(tmp_path: Path) -> None:
    slides = generate_dataset(tmp_path, n_slides=3, seed=11, width=256, height=192, mpp=0.5)
    assert len(slides) == len(GOLDEN_DATASET)
    for slide, (name, split, seed, counts, labels_hash) in zip(slides, GOLDEN_DATASET, strict=True):
        assert (slide.name, slide.split, slide.seed) == (name, split, seed)
        assert [slide.pixel_counts[c] for c in KIDNEY_CLASSES] == counts
        with tifffile.TiffFile(slide.label_path) as tif:
            assert _sha256(tif.pages[0].asarray()) == labels_hash
    assert hashlib.sha256((tmp_path / "slides.csv").read_bytes()).hexdigest() == GOLDEN_SLIDES_CSV
