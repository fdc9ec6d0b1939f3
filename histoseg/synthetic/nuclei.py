"""Nuclei: collected by every painting stage, then drawn at once (darker rim, granular chromatin, nucleolus)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from histoseg.synthetic.canvas import Canvas
from histoseg.synthetic.fields import resize_nearest
from histoseg.synthetic.layout import Grid


@dataclass
class Nuclei:
    """Nucleus list being collected: centres (um), semi-axes (um), angle (radians), stain, compartment."""

    x: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    a: list[np.ndarray] = field(default_factory=list)
    b: list[np.ndarray] = field(default_factory=list)
    angle: list[np.ndarray] = field(default_factory=list)
    dark: list[np.ndarray] = field(default_factory=list)
    comp: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        x: np.ndarray,
        y: np.ndarray,
        a: np.ndarray | float,
        b: np.ndarray | float,
        angle: np.ndarray | float,
        dark: np.ndarray | float,
        comp: np.ndarray | int,
    ) -> None:
        """Add ``len(x)`` nuclei; scalars apply to all of them.

        Args:
            x: (n,) centres, um.
            y: (n,) centres, um.
            a: Semi-major axes, um.
            b: Semi-minor axes, um.
            angle: Orientation of the major axis, radians.
            dark: Haematoxylin strength.
            comp: Compartment (see :attr:`histoseg.synthetic.canvas.Canvas.comp`) the nucleus stays inside.
        """
        n = len(x)
        if n == 0:
            return
        self.x.append(np.asarray(x, np.float32))
        self.y.append(np.asarray(y, np.float32))
        for store, value, dtype in (
            (self.a, a, np.float32),
            (self.b, b, np.float32),
            (self.angle, angle, np.float32),
            (self.dark, dark, np.float32),
            (self.comp, comp, np.int32),
        ):
            store.append(np.broadcast_to(np.asarray(value, dtype), (n,)).astype(dtype))

    def arrays(self) -> dict[str, np.ndarray]:
        """The collected nuclei as (N,) arrays ``x, y, a, b, angle, dark`` (float32) and ``comp`` (int32)."""
        names = ("x", "y", "a", "b", "angle", "dark", "comp")
        if not self.x:
            return {n: np.zeros(0, np.int32 if n == "comp" else np.float32) for n in names}
        return {n: np.concatenate(getattr(self, n)) for n in names}


def paint_nuclei(nuc: dict[str, np.ndarray], canvas: Canvas, grid: Grid) -> None:
    """Add elliptical nuclei to the canvas's stain maps in place.

    Each nucleus is drawn only where the compartment map equals its compartment, so a
    nucleus never crosses into a lumen, a membrane or a neighbouring object.

    Args:
        nuc: The nuclei, as :meth:`Nuclei.arrays` returns them.
        canvas: The canvas (its ``comp`` and ``noise_fine`` are read, its ``maps`` written).
        grid: The slide's grids.
    """
    n = len(nuc["x"])
    if n == 0:
        return
    mpp = grid.mpp
    sel, k = _owned_pixels(nuc, grid)
    width = grid.shape[1]
    du = ((sel % width).astype(np.float32) + 0.5) * mpp - nuc["x"][k]
    dv = ((sel // width).astype(np.float32) + 0.5) * mpp - nuc["y"][k]
    cos_k, sin_k = np.cos(nuc["angle"])[k], np.sin(nuc["angle"])[k]
    u = du * cos_k + dv * sin_k
    v = -du * sin_k + dv * cos_k
    q2 = (u / nuc["a"][k]) ** 2 + (v / nuc["b"][k]) ** 2
    keep = (q2 < 1.3) & (canvas.comp.reshape(-1)[sel] == nuc["comp"][k])
    sel, k, u, v, q = sel[keep], k[keep], u[keep], v[keep], np.sqrt(q2[keep])
    amount = np.clip((1.06 - q) / 0.14, 0, 1)
    # chromatin: darker rim, granular inside, a nucleolus slightly off centre
    chrom = 0.6 + 0.45 * q**2 + 0.3 * canvas.noise_fine.reshape(-1)[sel]
    off = 0.3 * nuc["b"][k]
    nucleolus = ((u - off) ** 2 + (v + 0.3 * off) ** 2) < (0.12 * nuc["a"][k] + 0.3) ** 2
    value = nuc["dark"][k] * (chrom + 0.35 * nucleolus)
    maps = canvas.maps
    h1, p1, c1 = maps.h.reshape(-1), maps.p.reshape(-1), maps.c.reshape(-1)
    h1[sel] = h1[sel] * (1 - amount) + value * amount
    p1[sel] = p1[sel] * (1 - 0.7 * amount) + 0.04 * amount
    c1[sel] = c1[sel] * (1 - 0.5 * amount)


def _owned_pixels(nuc: dict[str, np.ndarray], grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Flat output-pixel indices near a nucleus centre and the index of that (nearest) nucleus.

    The owner of each pixel is the nearest nucleus centre, found on the geometry grid;
    pixels farther than the largest semi-axis (+1.5 um) from every centre are left out.
    """
    gshape, gum = grid.gshape, grid.gum
    n = len(nuc["x"])
    marks = np.zeros(gshape, np.int32)
    ix = np.clip((nuc["x"] / gum).astype(np.intp), 0, gshape[1] - 1)
    iy = np.clip((nuc["y"] / gum).astype(np.intp), 0, gshape[0] - 1)
    marks[iy, ix] = np.arange(1, n + 1, dtype=np.int32)
    dist, (oy, ox) = ndi.distance_transform_edt(marks == 0, return_indices=True)
    reach = (float(nuc["a"].max()) + 1.5) / gum
    owner_g = np.where(dist <= reach, marks[oy, ox] - 1, -1).astype(np.int32)
    del dist, oy, ox
    owner = resize_nearest(owner_g, grid.shape, grid.g).reshape(-1)
    sel = np.flatnonzero(owner >= 0)
    return sel, owner[sel]
