"""io/backends.py: resolution tags to mpp, the backend chosen per file, truncated TIFFs refused."""

import numpy as np
import pytest
import tifffile

from histoseg.errors import SlideError
from histoseg.io.backends import (
    ImageBackend,
    TiffBackend,
    _resolution_to_mpp,
    _tiff_tag_mpp,
    check_tiff_complete,
    choose_backend,
)


@pytest.mark.parametrize(
    ("resolution", "unit", "mpp"),
    [((20000, 1), 3, 0.5), (50800.0, 2, 0.5), ((1, 0), 3, None), (20000, 1, None), (None, 3, None),
     (72.0, 2, None)],  # 72 dpi: an image tool's default, not a slide's resolution
)  # fmt: skip
def test_resolution_to_mpp_known_answers(resolution, unit, mpp):
    assert _resolution_to_mpp(resolution, unit) == (pytest.approx(mpp) if mpp else None)


def test_implausible_tag_is_kept_for_the_message():
    assert _tiff_tag_mpp(72.0, 2) == pytest.approx(25400 / 72)


def test_backend_per_file_and_truncated_tiff(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    tiff = tmp_path / "s.tif"
    tifffile.imwrite(tiff, image, tile=(32, 32), photometric="rgb")
    assert choose_backend(tmp_path / "s.png") is ImageBackend
    assert choose_backend(tiff) is TiffBackend
    check_tiff_complete(tiff)  # a whole file: no error
    cut = tmp_path / "cut.tif"
    cut.write_bytes(tiff.read_bytes()[:-100])
    with pytest.raises(SlideError, match=r"cut\.tif: file is truncated .*; copy or export the slide again"):
        check_tiff_complete(cut)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SlideError, match="not a slide format histoseg can read"):
        choose_backend(tmp_path / "notes.txt")
