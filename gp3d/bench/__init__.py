"""Benchmarks: ``python -m gp3d.bench`` (training step), ``gp3d.bench.render``, ``gp3d.bench.fid``."""
