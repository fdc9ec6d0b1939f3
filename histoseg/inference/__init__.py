"""Slide inference: checkpoints, the Predictor seam, and tiled whole-slide prediction."""
