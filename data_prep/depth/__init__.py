"""Depth maps for real images: import a release's maps or run a monocular estimator (spec 5.1)."""
