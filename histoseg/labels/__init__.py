"""Annotations put on the training grid: everything that reads a label file and makes a label grid.

- :mod:`~histoseg.labels.table` — the slide table (:class:`~histoseg.labels.table.SlideRecord`);
- :mod:`~histoseg.labels.grid` — the one entry point from a table row to its label grid, through a
  registry keyed by label kind (adding a kind = one module + one registry line);
- :mod:`~histoseg.labels.store` — prepared training labels stored by what was drawn (labelled
  pixels only, by tile; sparse kinds without a whole-slide array) and cached under the cache folder;
- :mod:`~histoseg.labels.annotations` — the QuPath GeoJSON feature reader and class lookup that
  points and scribbles share;
- :mod:`~histoseg.labels.dense`, :mod:`~histoseg.labels.points`, :mod:`~histoseg.labels.scribbles`
  — the three label kinds (read, rasterise, write), with :mod:`~histoseg.labels.strokes` (the
  stroke raster rule) and :mod:`~histoseg.labels.superpixels` (scribble growth);
- :mod:`~histoseg.labels.simulate` — sparse labels drawn from dense masks, for experiments (its
  candidate stroke paths in :mod:`~histoseg.labels.stroke_paths`).

The unlabelled value is :data:`histoseg.IGNORE_INDEX` (255) everywhere.
"""
