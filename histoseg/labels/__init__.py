"""Annotations put on the training grid: dense masks, grid points and scribbles.

Readers of every label kind, their rasterisers, the QuPath GeoJSON feature reader they share, and
the simulators that draw sparse labels from dense masks for experiments.
"""
