"""Evaluation metrics (FID family, Non-Flatness Score)."""
