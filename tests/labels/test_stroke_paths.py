"""labels/stroke_paths.py: candidate stroke paths inside an object, known shapes."""

import numpy as np

from histoseg.labels.stroke_paths import contour_paths, random_walk_paths, skeleton_paths


def test_skeleton_of_a_bar_is_its_middle_row():
    bar = np.zeros((7, 20), bool)
    bar[2:5, 2:18] = True
    (path,) = skeleton_paths(bar, max_vertices=100)
    assert path.dtype == np.int64 and bar[path[:, 0], path[:, 1]].all()
    assert np.abs(np.diff(path, axis=0)).max() == 1  # one chain of 8-connected pixels
    middle = sorted(c for r, c in path.tolist() if r == 3)
    assert middle == list(range(2, 16))  # along the middle row, end to end (skimage bends the last pixel)
    assert skeleton_paths(np.zeros((4, 4), bool), 10) == []


def test_contour_and_random_walks_stay_inside():
    yy, xx = np.mgrid[:41, :41]
    disk = (yy - 20) ** 2 + (xx - 20) ** 2 <= 15**2
    from scipy import ndimage

    edt = ndimage.distance_transform_edt(disk)
    paths = contour_paths(edt, depth=7.5, max_vertices=1000)
    assert paths and all(disk[p[:, 0], p[:, 1]].all() for p in paths)
    radius = np.hypot(paths[0][:, 0] - 20, paths[0][:, 1] - 20)
    assert abs(radius.mean() - 7.5) < 1.0  # an iso-line half way in
    walks = random_walk_paths(disk, max_vertices=50, rng=np.random.default_rng(0))
    assert walks and all(disk[w[:, 0], w[:, 1]].all() for w in walks)
    assert all(len({tuple(v) for v in w}) == len(w) for w in walks)  # self-avoiding
    steps = np.abs(np.diff(walks[0], axis=0)).max()
    assert steps <= 1  # 8-connected steps
