"""Pure torch: segmentation networks, patch classifiers and their convolutionalized forms, losses.

Nothing here imports Lightning; the tasks in :mod:`histoseg.tasks` wrap these modules.
"""
