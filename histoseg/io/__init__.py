"""Reading and writing files: whole-slide images, tiled TIFFs, tissue masks, atomic writes.

The bottom layer of histoseg: NumPy, tifffile and OpenSlide only (no torch models, no Lightning).
"""
