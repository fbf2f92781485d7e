"""Depth maps on many processes through Lightning's ``Trainer.predict`` (DDP, as training).

Work split (independent of the number of processes): the sorted image list is cut into global
batches of ``batch_size`` consecutive images (:func:`global_batches`); rank ``r`` of ``W`` runs
batches ``r, r + W, ...`` (:func:`rank_batches`). A batch is grouped by model input shape and each
group runs as one forward pass, so every map depends only on its batch, never on ``W``: at the
same device type, precision and thread count, 1 and N processes write identical bytes.

Resume: a batch whose maps all exist is not loaded again; a batch with some maps missing runs
whole (same composition, same maps) and writes the missing ones. :class:`MapWriter` (a
``BasePredictionWriter``) writes each rank's maps atomically (temp file + rename) and, at the end,
the rank's skip list (``.predict-depth/skips-rank<r>-of-<W>.json``); rank 0 merges them into
``depth_info.json`` after a barrier (``data_prep/predict_depth.py``). Rank 0 shows a progress bar
in images/s with an ETA (all ranks' images, estimated from rank 0's).
"""

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from data_prep.depth.importer import write_atomic
from data_prep.depth.inference import _write_map
from data_prep.depth.model import DepthModel
from data_prep.folder_source import depth_relpath
from data_prep.images import ImageSkip, load_rgb
from data_prep.tar_source import open_image

WORK_DIR = ".predict-depth"  # per-rank skip lists of the last run
# Trainer.predict precisions of predict_depth / predict_features: the network stays fp32, autocast
# for the halves.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def global_batches(num_images: int, batch_size: int) -> list[range]:
    """Consecutive index ranges of ``batch_size`` images (the last may be shorter)."""
    return [range(s, min(s + batch_size, num_images)) for s in range(0, num_images, batch_size)]


def rank_batches(batches: Sequence[range], rank: int, world: int) -> list[range]:
    """The batches rank ``rank`` of ``world`` runs: every ``world``-th, from ``rank``."""
    return list(batches[rank::world])


def todo_batches(out: Path, relpaths: Sequence[str], batches: Sequence[range]) -> list[range]:
    """Batches with at least one map missing (resume)."""
    return [b for b in batches if not all((out / depth_relpath(relpaths[i])).is_file() for i in b)]


class _BatchInputs(Dataset):
    """Item ``k`` = the whole batch ``batches[k]``: ``[(relpath, pixels | None, size | skip)]``."""

    def __init__(self, root: Path, relpaths: Sequence[str], batches: list[range], processor):
        self.root, self.relpaths, self.batches, self.processor = root, relpaths, batches, processor

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> list[tuple[str, Any, Any]]:
        items = []
        for i in self.batches[k]:
            rel = self.relpaths[i]
            try:
                rgb = load_rgb(open_image(self.root, rel))
                pixels = self.processor(images=Image.fromarray(rgb), return_tensors="pt")
                items.append((rel, pixels["pixel_values"][0], rgb.shape[:2]))
            except ImageSkip as skip:
                items.append((rel, None, (skip.reason, skip.detail)))
            except Exception as err:  # noqa: BLE001 - counted, never fatal
                items.append((rel, None, ("error", f"preprocessing: {type(err).__name__}: {err}")))
        return items


def _keep(items):
    return items


class DepthPredictor(L.LightningModule):
    """Runs a loaded :class:`DepthModel` on this rank's batches (the network is a submodule,
    so Lightning moves it to the rank's device and applies ``precision``)."""

    def __init__(
        self, depth: DepthModel, root: Path, relpaths: Sequence[str], out: Path,
        batch_size: int, workers: int,
    ) -> None:  # fmt: skip
        super().__init__()
        self.depth, self.network = depth, depth.model
        self.root, self.relpaths, self.out = root, relpaths, out
        self.batch_size, self.workers = batch_size, workers
        self.todo: list[range] = []

    def predict_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        mine = rank_batches(global_batches(len(self.relpaths), self.batch_size), rank, world)
        self.todo = todo_batches(self.out, self.relpaths, mine)
        data = _BatchInputs(self.root, self.relpaths, self.todo, self.depth.processor)
        return DataLoader(data, batch_size=None, num_workers=self.workers, collate_fn=_keep)

    def predict_step(self, batch: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
        self.depth.device = self.device  # where Lightning put the network
        groups: dict[tuple, list[int]] = {}
        for j, (_, pixels, _) in enumerate(batch):
            if pixels is not None:
                groups.setdefault(tuple(pixels.shape), []).append(j)
        preds: dict[int, Any] = {}
        for js in groups.values():
            x = torch.stack([batch[j][1] for j in js])
            maps = self.depth.predict(x, [batch[j][2] for j in js])
            preds.update(zip(js, maps, strict=True))
        return [
            (rel, preds[j], None) if j in preds else (rel, None, why)
            for j, (rel, _, why) in enumerate(batch)
        ]


class MapWriter(BasePredictionWriter):
    """Writes this rank's maps (atomically, missing ones only) and, at the end, its skips."""

    def __init__(self, out: Path, prediction: str, max_ratio: float, total: int, progress: bool):
        super().__init__(write_interval="batch")
        self.out, self.prediction, self.max_ratio = out, prediction, max_ratio
        self.total, self.progress = total, progress
        self.skips: list[tuple[str, str, str]] = []
        self.written = 0
        self.bar: tqdm | None = None

    def on_predict_start(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:  # all ranks' images, estimated from rank 0's
            todo = sum(len(b) for b in getattr(pl_module, "todo", [])) * trainer.world_size
            self.bar = tqdm(total=min(self.total, todo), unit="img", desc="predict_depth",
                            disable=not self.progress)  # fmt: skip
        self.t0 = time.perf_counter()

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        for rel, pred, why in prediction:
            if pred is None:
                self.skips.append((rel, *why))
            elif not (self.out / depth_relpath(rel)).is_file():
                failed = _write_map(self.out, rel, pred, self.prediction, self.max_ratio)
                if failed is None:
                    self.written += 1
                else:
                    self.skips.append(failed)
        if self.bar is not None:
            self.bar.update(min(len(prediction) * trainer.world_size, self.total - self.bar.n))

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
        rank, world = trainer.global_rank, trainer.world_size
        record = {"written": self.written, "skips": self.skips,
                  "seconds": time.perf_counter() - self.t0}  # fmt: skip
        write_atomic(skips_path(self.out, rank, world), json.dumps(record).encode())


def skips_path(out: Path, rank: int, world: int) -> Path:
    return out / WORK_DIR / f"skips-rank{rank:05d}-of-{world:05d}.json"


def read_rank_records(out: Path, world: int) -> list[dict[str, Any]]:
    """Every rank's end-of-run record (rank 0 reads them after a barrier)."""
    return [json.loads(skips_path(out, r, world).read_text()) for r in range(world)]


def launch_world() -> tuple[int, int]:
    """(devices per node, nodes) of a torchrun / SLURM launch, from its environment."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("SLURM_NTASKS_PER_NODE") or 1)
    world = int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or local)
    return local, max(1, world // local)
