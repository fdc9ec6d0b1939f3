"""Sampling designs for counting points, and the design-based estimators of an area fraction.

A pathologist's classified points are a probability sample of a slide; this package places them
and turns them into an estimate with an interval that matches how they were placed:

- :mod:`~histoseg.sampling.frame`: the counting frame (where points may fall) and its strata,
  a coarse raster over the slide made from a label map;
- :mod:`~histoseg.sampling.allocation`: how many points each stratum gets;
- :mod:`~histoseg.sampling.placement`: systematic grids with a random offset, uniform random
  points and stratified random points, and the nested rounds that add points to each;
- :mod:`~histoseg.sampling.design`: the design record written beside the points (``.design.json``);
- :mod:`~histoseg.sampling.variance`: the variance of a design-weighted mean for each design;
- :mod:`~histoseg.sampling.estimators`: ratio estimators of the interstitial fraction (point
  counting, stratified, prediction-powered and cross-fitted prediction-powered), the headline
  rule and the number of points a target half-width needs.

Pure NumPy; the methods and their references are in docs/methods.md ("Counting points").
"""
