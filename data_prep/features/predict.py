"""Teacher features on many processes through Lightning's ``Trainer.predict`` (DDP).

The unit of work is a shard: the shards still missing in the work folder are dealt out round
robin (rank ``r`` of ``W`` takes ``r, r + W, ...``); a shard's features are computed in the same
batches whatever ``W`` is, so its bytes do not depend on the number of processes (and equal
``extract_features``' at the same device type, precision and thread count). :class:`ShardWriter`
(a ``BasePredictionWriter``) writes each finished shard atomically from the rank that made it;
rank 0 writes the manifest after a barrier (``data_prep/predict_features.py``). Rank 0 shows a
progress bar in images/s with an ETA (all ranks' images, estimated from rank 0's).
"""

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from data_prep.extract_features import embed_shard_samples, write_shard_with_features
from data_prep.features.teacher import Teacher


class _Shards(Dataset):
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, k: int) -> dict[str, Any]:
        return self.entries[k]


def _keep(item):
    return item


def missing_shards(work: Path, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Source shard entries whose output shard is not in ``work`` yet (resume)."""
    return [e for e in entries if not (work / e["name"]).is_file()]


class FeaturePredictor(L.LightningModule):
    """Embeds this rank's missing shards (the teacher network is a submodule, so Lightning
    moves it to the rank's device and applies ``precision``)."""

    def __init__(
        self, teacher: Teacher, src: Path, work: Path, entries: list[dict[str, Any]], batch: int
    ) -> None:
        super().__init__()
        self.teacher, self.network = teacher, teacher.model
        self.src, self.work, self.entries, self.batch = src, work, entries, batch
        self.todo: list[dict[str, Any]] = []

    def predict_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        self.todo = missing_shards(self.work, self.entries)[rank::world]
        return DataLoader(_Shards(self.todo), batch_size=None, collate_fn=_keep)

    def predict_step(self, entry: dict[str, Any]) -> tuple[dict[str, Any], list, Any]:
        self.teacher.device = self.device  # where Lightning put the network
        samples, feats = embed_shard_samples(self.teacher, self.src / entry["name"], self.batch, 0)
        return entry, samples, feats


class ShardWriter(BasePredictionWriter):
    """Writes each shard with its features atomically, on the rank that embedded it."""

    def __init__(self, work: Path, total_images: int, progress: bool) -> None:
        super().__init__(write_interval="batch")
        self.work, self.total, self.progress = work, total_images, progress
        self.written = 0
        self.bar: tqdm | None = None

    def on_predict_start(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            todo = sum(e["num_samples"] for e in getattr(pl_module, "todo", []))
            self.bar = tqdm(total=min(self.total, todo * trainer.world_size), unit="img",
                            desc="predict_features", disable=not self.progress)  # fmt: skip

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        entry, samples, feats = prediction
        write_shard_with_features(self.work / entry["name"], samples, feats)
        self.written += len(samples)
        if self.bar is not None:
            self.bar.update(min(len(samples) * trainer.world_size, self.bar.total - self.bar.n))

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
