"""Candidate stroke paths inside one object, for the scribble simulator.

Paths are (n, 2) int64 ``(row, col)`` pixel sequences inside a boolean object crop, longest
first: along the object's skeleton (:func:`skeleton_paths`), along an iso-line of its distance
map (:func:`contour_paths`), or as self-avoiding random walks (:func:`random_walk_paths`).
:func:`histoseg.labels.simulate.simulate_scribbles` turns them into strokes.

Example:
    >>> import numpy as np
    >>> from histoseg.labels.stroke_paths import skeleton_paths
    >>> bar = np.zeros((5, 12), bool); bar[1:4, 1:11] = True
    >>> path = skeleton_paths(bar, max_vertices=100)[0]
    >>> path.shape[1], bool(bar[path[:, 0], path[:, 1]].all())  # (row, col) pixels inside the bar
    (2, True)
"""

from __future__ import annotations

from collections import deque

import numpy as np

_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _bfs(start: int, nodes: set[int], adjacency: list[list[int]]) -> tuple[int, dict[int, int]]:
    parent = {start: -1}
    queue = deque([start])
    last = start
    while queue:
        last = queue.popleft()
        for nxt in adjacency[last]:
            if nxt in nodes and nxt not in parent:
                parent[nxt] = last
                queue.append(nxt)
    return last, parent


def skeleton_paths(allowed: np.ndarray, max_vertices: int) -> list[np.ndarray]:
    """Order the skeleton of ``allowed`` into paths, longest first (tree diameters, peeled).

    Returns:
        List of (n, 2) int64 (row, col) arrays; stops once ``max_vertices`` are collected.
    """
    from skimage.morphology import skeletonize

    coords = np.argwhere(skeletonize(allowed))
    if len(coords) == 0:
        return []
    index = {(int(r), int(c)): i for i, (r, c) in enumerate(coords)}
    adjacency = [
        [index[(int(r) + dr, int(c) + dc)] for dr, dc in _NEIGHBOURS if (int(r) + dr, int(c) + dc) in index]
        for r, c in coords
    ]
    remaining = set(range(len(coords)))
    paths: list[np.ndarray] = []
    total = 0
    while remaining and total < max_vertices:
        u, _ = _bfs(min(remaining), remaining, adjacency)
        v, parent = _bfs(u, remaining, adjacency)
        chain = [v]
        while parent[chain[-1]] != -1:
            chain.append(parent[chain[-1]])
        paths.append(coords[chain])
        remaining.difference_update(chain)
        total += len(chain)
    paths.sort(key=len, reverse=True)
    return paths


def contour_paths(edt: np.ndarray, depth: float, max_vertices: int) -> list[np.ndarray]:
    """Closed iso-lines ``edt == depth`` (``skimage.measure.find_contours``) as pixel paths.

    Returns:
        List of (n, 2) int64 (row, col) arrays (consecutive duplicates removed), longest first;
        stops once ``max_vertices`` are collected.
    """
    from skimage.measure import find_contours

    paths: list[np.ndarray] = []
    total = 0
    for line in sorted(find_contours(edt, depth), key=len, reverse=True):
        rc = np.floor(line).astype(np.int64)
        keep = np.ones(len(rc), bool)
        keep[1:] = np.any(rc[1:] != rc[:-1], axis=1)
        rc = rc[keep]
        inside = edt[rc[:, 0], rc[:, 1]] > depth - 1.0
        rc = rc[inside]
        if len(rc) == 0:
            continue
        paths.append(rc)
        total += len(rc)
        if total >= max_vertices:
            break
    return paths


def random_walk_paths(allowed: np.ndarray, max_vertices: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Self-avoiding random walks with momentum inside ``allowed`` (8-neighbour steps)."""
    free = allowed.copy()
    height, width = free.shape
    steps = np.array(_NEIGHBOURS, dtype=np.float64)
    unit = steps / np.linalg.norm(steps, axis=1, keepdims=True)
    paths: list[np.ndarray] = []
    total = 0
    for _ in range(10):
        starts = np.argwhere(free)
        if len(starts) == 0 or total >= max_vertices:
            break
        r, c = (int(v) for v in starts[rng.integers(len(starts))])
        heading = unit[rng.integers(8)]
        walk = [(r, c)]
        free[r, c] = False
        while total + len(walk) < max_vertices:
            best, best_score = -1, -np.inf
            for k, (dr, dc) in enumerate(_NEIGHBOURS):
                rr, cc = r + dr, c + dc
                if 0 <= rr < height and 0 <= cc < width and free[rr, cc]:
                    score = float(unit[k] @ heading) + 0.6 * rng.standard_normal()
                    if score > best_score:
                        best, best_score = k, score
            if best < 0:
                break
            r, c = r + _NEIGHBOURS[best][0], c + _NEIGHBOURS[best][1]
            free[r, c] = False
            heading = 0.8 * heading + 0.2 * unit[best]
            heading /= max(np.linalg.norm(heading), 1e-9)
            walk.append((r, c))
        paths.append(np.array(walk, dtype=np.int64))
        total += len(walk)
    paths.sort(key=len, reverse=True)
    return paths


__all__ = ["contour_paths", "random_walk_paths", "skeleton_paths"]
