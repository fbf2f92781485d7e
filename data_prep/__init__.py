"""Offline data preparation: WebDataset shards + manifest (format in data_prep/common.py)."""
