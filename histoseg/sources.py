"""Slide-table sources: where a datamodule's slide table comes from when it is not a CSV file.

:class:`SyntheticSlides` generates (once, into a cache folder) a seeded set of synthetic
kidney-like pyramidal TIFF slides with exact dense labels (:mod:`histoseg.synthetic`),
optionally turns the training slides' labels into grid points or simulated scribbles, and writes
the slide table (:mod:`histoseg.datasets`) next to them. ``SlideDataModule(synthetic=...)`` takes
one (``data.synthetic.*`` in a config); ``SyntheticKidneyDataModule`` is a datamodule with one by
default.

Example:
    >>> from histoseg.sources import SyntheticSlides
    >>> source = SyntheticSlides(n_slides=2, width=512, height=384, root="/tmp/syn")
    >>> source.dataset_dir().name
    'n2-512x384-mpp0.5-seed0-hue0-sat1-fib0'
    >>> table = source.table(["background", "interstitium", "tubules", "glomeruli", "other"])  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from histoseg import IGNORE_INDEX
from histoseg.errors import ConfigError
from histoseg.io.cache import default_cache_dir
from histoseg.io.text import write_slide_table
from histoseg.labels.simulate import ScribbleMethod

LabelKind = Literal["dense", "points", "scribbles"]


@dataclass(frozen=True)
class SyntheticSlides:
    """Synthetic kidney-like slides generated once into a cache folder, and their slide table.

    The generator (:mod:`histoseg.synthetic`) paints tubules, glomeruli, interstitium,
    vessels and glass with PAS-like colours and writes pyramidal TIFFs with their mpp and exact
    dense labels. The first ``n_val`` slides are for validation (dense labels), the rest for
    training (labels of ``label_kind``).

    Args:
        root: Cache folder for the generated slides (null: ``$HISTOSEG_CACHE`` or
            ``~/.cache/histoseg``, subfolder ``synthetic-kidney``).
        n_slides: Number of slides (at least 2).
        n_val: Of which validation slides (fewer than ``n_slides``).
        width: Slide width in pixels at ``mpp``.
        height: Slide height in pixels at ``mpp``.
        mpp: Level-0 resolution of the generated slides in microns per pixel.
        seed: Seed of the generator (the slides; not the patch draws, which are ``data.seed``).
        stain_hue_shift: Stain variation: rotation of the stain colours in degrees (domain shift).
        stain_saturation: Stain variation: saturation scale of the stain colours (1 = unchanged).
        fibrosis: Pathology setting in [0, 1]: wider interstitium, atrophic tubules.
        label_kind: Labels of the training slides: dense masks, grid points drawn every
            ``grid_spacing_um`` from them, or scribbles simulated from them (``scribble_fraction``
            of the labelled pixels, drawn with the brush ``data.labels.brush_um``).
        grid_spacing_um: Grid-point spacing in microns.
        scribble_fraction: Fraction of labelled pixels covered by simulated scribbles.
        scribble_method: How the simulated strokes run inside each object: along its
            ``skeleton``, as ``random_walk``s, or along a ``contour`` at half its inscribed radius
            (:func:`histoseg.labels.scribbles.simulate_scribbles`).

    Raises:
        ConfigError: ``n_slides < 2`` or ``n_val >= n_slides``.
    """

    root: str | None = None
    n_slides: int = 6
    n_val: int = 1
    width: int = 3072
    height: int = 2304
    mpp: float = 0.5
    seed: int = 0
    stain_hue_shift: float = 0.0
    stain_saturation: float = 1.0
    fibrosis: float = 0.0
    label_kind: LabelKind = "dense"
    grid_spacing_um: float = 20.0
    scribble_fraction: float = 0.03
    scribble_method: ScribbleMethod = "skeleton"

    def __post_init__(self) -> None:
        if self.n_val >= self.n_slides or self.n_slides < 2 or self.n_val < 0:
            raise ConfigError(
                f"data.synthetic.n_slides={self.n_slides} and data.synthetic.n_val={self.n_val}: need "
                "0 <= n_val < n_slides and n_slides >= 2"
            )

    def dataset_dir(self) -> Path:
        """Folder of the generated slides for these generator settings."""
        base = Path(self.root).expanduser() if self.root else default_cache_dir() / "synthetic-kidney"
        tag = (
            f"n{self.n_slides}-{self.width}x{self.height}-mpp{self.mpp:g}-seed{self.seed}"
            f"-hue{self.stain_hue_shift:g}-sat{self.stain_saturation:g}-fib{self.fibrosis:g}"
        )
        return base / tag

    def table(self, classes: list[str], brush_um: float = 2.0) -> Path:
        """Generate (or reuse) the slides and their slide table; the table's path.

        Args:
            classes: Class names in label-index order (written into points / scribble files).
            brush_um: Scribbles: brush width in microns.
        """
        from histoseg.synthetic import StainParams, TissueParams, generate_dataset

        root = self.dataset_dir()
        slides = generate_dataset(
            root,
            n_slides=self.n_slides,
            seed=self.seed,
            width=self.width,
            height=self.height,
            mpp=self.mpp,
            stain=StainParams(hue_shift=self.stain_hue_shift, saturation=self.stain_saturation),
            tissue=TissueParams(fibrosis=self.fibrosis),
        )
        # every option that changes the table is in its name, so a changed option never reuses a stale table
        tag = f"{self.label_kind}-val{self.n_val}"
        if self.label_kind == "points":
            tag += f"-grid{self.grid_spacing_um:g}um"
        elif self.label_kind == "scribbles":
            tag += f"-frac{self.scribble_fraction:g}-brush{brush_um:g}um"
            if self.scribble_method != "skeleton":  # the default keeps the names tables had before
                tag += f"-{self.scribble_method}"
        table = root / f"table-{tag}.csv"
        if not table.exists():
            rows = [self._row(i, item, root, tag, classes, brush_um) for i, item in enumerate(slides)]
            write_slide_table(table, rows)
        return table

    def _row(
        self, i: int, item: Any, root: Path, tag: str, classes: list[str], brush_um: float
    ) -> dict[str, str]:
        """The slide-table row of generated slide ``i`` (writing its sparse labels if needed)."""
        from histoseg.labels.dense import read_mask_file

        split = "val" if i < self.n_val else "train"
        labels = Path(item.label_path)
        kind = "dense"
        if self.label_kind != "dense" and split == "train":
            mask = read_mask_file(labels)
            stem = Path(item.image_path).stem
            if self.label_kind == "points":
                from histoseg.labels.points import write_points_csv
                from histoseg.labels.simulate import grid_points_from_mask

                points = grid_points_from_mask(
                    mask, spacing_px=self.grid_spacing_um / item.mpp, ignore=(IGNORE_INDEX,)
                )
                labels = root / f"{stem}.{tag}.points.csv"
                write_points_csv(points, labels, classes)
            else:
                from histoseg.labels.scribbles import write_scribbles_geojson
                from histoseg.labels.simulate import simulate_scribbles

                brush = max(1, round(brush_um / item.mpp))
                strokes = simulate_scribbles(
                    mask, fraction=self.scribble_fraction, brush_px=brush, seed=i, method=self.scribble_method
                )
                labels = root / f"{stem}.{tag}.scribbles.geojson"
                write_scribbles_geojson(strokes, labels, classes, brush_px=brush)
            kind = self.label_kind
        return {"slide": Path(item.image_path).name, "labels": labels.name, "kind": kind, "split": split}


__all__ = ["LabelKind", "SyntheticSlides", "default_cache_dir"]
