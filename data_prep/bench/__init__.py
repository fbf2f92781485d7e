"""Data-preparation benchmarks (``python -m data_prep.bench``)."""
