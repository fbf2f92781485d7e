"""LightningDataModule streaming gp3d WebDataset shards (format: ``data_prep/common.py``).

Progress is counted in images (spec 7.3), so an "epoch" is ``epoch_images`` images:
``ceil(epoch_images / batch_size)`` steps, each taking ``batch_size / world_size`` images on
every rank. Shards are drawn with replacement, like the original's infinite sampler.
"""

import math
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from gp3d.data.bad_samples import SkipTally
from gp3d.data.format import DatasetFormatError, read_manifest, shard_paths
from gp3d.data.shards import make_pipeline
from gp3d.types import Batch


def stream_position(start_nimg: int, batch_size: int, batches_per_epoch: int) -> tuple[int, int]:
    """(passes over the data completed, batches of the current pass used) after ``start_nimg``
    images in global batches of ``batch_size``: where a resumed run's data stream continues, so
    no sample of the epoch is repeated or skipped (every pass has exactly batches_per_epoch)."""
    return divmod(start_nimg // batch_size, batches_per_epoch)


class GP3DDataModule(L.LightningDataModule):
    """Real-data batches (``gp3d.types.Batch``) for GAN training.

    Args:
        path: dataset folder holding ``manifest.json`` and its tar shards.
        batch_size: GLOBAL batch size; each device gets ``batch_size // world_size``.
        num_workers: DataLoader workers per device (0 reads in the main process).
        shuffle_buffer: samples held by each worker's shuffle buffer.
        epoch_images: images per epoch, summed over devices (rounded up to whole steps).
        xflip: mirror image and depth together with p = 0.5 (spec 5.1).
        use_embeddings: also yield the teacher embeddings (``emb.npy``) for distillation.
        resolution: expected image resolution; None accepts the dataset's.
        seed: seed of shard sampling, shuffling and flips.
        pin_memory: pin batches in page-locked memory; None (default): pin when the trainer
            trains on CUDA (faster, asynchronous host-to-device copies), not on CPU.
        create_hint: how users of this project create data, shown in errors.
        max_bad_fraction: bad samples (undecodable, missing member, wrong size, label out of
            range, non-finite embedding, corrupt shard) are skipped and counted; training stops
            once more than this fraction of the samples read were bad (``gp3d.data.bad_samples``).
        bad_min_samples: samples read before that fraction is judged.
    """

    def __init__(
        self,
        path: str,
        batch_size: int,
        num_workers: int = 2,
        shuffle_buffer: int = 1000,
        epoch_images: int = 10_000,
        xflip: bool = True,
        use_embeddings: bool = False,
        resolution: int | None = None,
        seed: int = 0,
        pin_memory: bool | None = None,
        create_hint: str = "make data",
        max_bad_fraction: float = 0.01,
        bad_min_samples: int = 1000,
    ) -> None:
        super().__init__()
        if batch_size < 1 or epoch_images < 1 or num_workers < 0 or shuffle_buffer < 1:
            raise ValueError(
                "need batch_size >= 1, epoch_images >= 1, num_workers >= 0, shuffle_buffer >= 1"
            )
        self.path = str(path)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.epoch_images = epoch_images
        self.xflip = xflip
        self.use_embeddings = use_embeddings
        self.requested_resolution = resolution
        self.seed = seed
        self.pin_memory = pin_memory
        self.create_hint = create_hint
        self.max_bad_fraction, self.bad_min_samples = max_bad_fraction, bad_min_samples
        # Main-process counts over all workers (each worker also judges its own share).
        self.skips = SkipTally(max_bad_fraction, bad_min_samples)
        self.rank, self.world_size = 0, 1
        self._manifest: dict[str, Any] | None = None

    # -- dataset metadata (read lazily so a config can be built before the data exists) --------
    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            manifest = read_manifest(self.path, create_hint=self.create_hint)
            self._check(manifest)
            self._manifest = manifest
        return self._manifest

    def _check(self, manifest: dict[str, Any]) -> None:
        res = manifest["resolution"]
        if self.requested_resolution is not None and res != self.requested_resolution:
            raise DatasetFormatError(
                f"Dataset {self.path} has resolution {res} but the config asks for "
                f"{self.requested_resolution}: set data.resolution={res} (or null), or point "
                f"data.path at a {self.requested_resolution}px dataset (e.g. `python -m "
                f"data_prep.synthetic.dataset --out <dir> --resolution {self.requested_resolution}`)."
            )
        if self.use_embeddings and "emb.npy" not in manifest["keys"]:
            raise DatasetFormatError(
                f"use_embeddings=True but the shards in {self.path} have no 'emb.npy' teacher "
                "embeddings (keys: " + ", ".join(manifest["keys"]) + "). Add them with the "
                "embedding step (`python -m data_prep.extract_features`), or set "
                "data.use_embeddings=false and turn the distillation loss off."
            )

    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def resolution(self) -> int:
        return int(self.manifest["resolution"])

    @property
    def embedding_dim(self) -> int | None:
        return self.manifest["embedding_dim"]

    @property
    def per_device_batch_size(self) -> int:
        return self.batch_size // self.world_size

    @property
    def batches_per_epoch(self) -> int:
        """Steps per epoch; every rank yields this many batches."""
        return max(1, math.ceil(self.epoch_images / self.batch_size))

    # -- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        trainer = self.trainer
        if trainer is not None:
            self.rank, self.world_size = trainer.global_rank, trainer.world_size
        if self.batch_size % self.world_size != 0:
            raise ValueError(
                f"batch_size={self.batch_size} is the global batch and must be divisible by the "
                f"world size ({self.world_size} devices)"
            )
        self.manifest  # noqa: B018 - validate early, on every rank

    def train_dataloader(self) -> DataLoader:
        start_pass, skip_batches = stream_position(
            self._start_nimg(), self.batch_size, self.batches_per_epoch
        )
        dataset = make_pipeline(
            shard_paths(self.path, self.manifest),
            resolution=self.resolution,
            per_device_batch=self.per_device_batch_size,
            num_batches=self.batches_per_epoch,
            rank=self.rank,
            world_size=self.world_size,
            shuffle_buffer=self.shuffle_buffer,
            xflip=self.xflip,
            use_embeddings=self.use_embeddings,
            seed=self.seed,
            start_pass=start_pass,
            skip_batches=skip_batches,
            num_classes=self.num_classes,
            embedding_dim=self.embedding_dim if self.use_embeddings else None,
            max_bad_fraction=self.max_bad_fraction,
            bad_min_samples=self.bad_min_samples,
        )
        workers = self.num_workers
        return DataLoader(
            dataset,
            # Its own generator: an iterator's base seed would otherwise be drawn from the global
            # RNG at every epoch start, which a resumed run (restored RNG) would see shifted.
            generator=torch.Generator().manual_seed(self.seed),
            batch_size=None,  # the pipeline batches (and drops partial batches) itself
            num_workers=workers,
            pin_memory=self._pin(),
            persistent_workers=workers > 0,  # keeps per-pass RNG state: new draws every epoch
            prefetch_factor=2 if workers > 0 else None,
        )

    def _pin(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        # getattr: the datamodule is also driven by hand and by light test doubles
        device = getattr(getattr(self.trainer, "strategy", None), "root_device", None)
        return device is not None and device.type == "cuda"

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count the samples the batch's worker skipped, log the counts when they change, and
        stop (``TooMuchBadData``) past ``max_bad_fraction``. Runs in the main process on every
        rank; each rank judges its own share of the stream."""
        events = getattr(batch, "skipped", ())
        if isinstance(batch, Batch):
            self.skips.add_good(batch.image.shape[0])
        if events:
            self.skips.add(events)  # logs the first ones, raises past the threshold
            trainer = self.trainer
            for logger in trainer.loggers if trainer is not None else []:
                logger.log_metrics(self.skips.metrics(), step=trainer.global_step)
        return batch

    def _start_nimg(self) -> int:
        """Images the model had seen when this loader was made: non-zero after a resume (Lightning
        restores the module's ``nimg`` buffer before it asks for the train dataloader)."""
        module = getattr(self.trainer, "lightning_module", None) if self.trainer else None
        nimg = getattr(module, "nimg", None)
        return int(nimg.item()) if isinstance(nimg, torch.Tensor) else 0

    # -- labels for fakes ---------------------------------------------------------------------
    def sample_labels(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """``n`` class labels drawn like the labels of random dataset items (spec 1.5)."""
        counts = torch.tensor(self.manifest["class_counts"], dtype=torch.float64)
        if counts.sum() <= 0:  # unlabelled data: every item has class 0
            return torch.zeros(n, dtype=torch.int64, device=device)
        labels = torch.multinomial(counts, n, replacement=True, generator=generator)
        return labels.to(device)
