"""Real-data loading: WebDataset shards -> ``gp3d.types.Batch`` (format: data_prep/common.py)."""

from gp3d.data.datamodule import GP3DDataModule

__all__ = ["GP3DDataModule"]
