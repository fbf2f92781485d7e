"""WebDataset pipeline: resampled shards -> decoded, shuffled, flipped samples -> ``Batch``.

The shard format is documented in ``data_prep/common.py``. Stages, in order:

1. an infinite stream of shards drawn with replacement (``wds.ResampledShards``), identical in
   every process, then split by node (explicit rank / world size from Lightning) and by
   DataLoader worker, so ranks and workers read disjoint positions of one stream;
2. tar -> samples; a shuffle buffer;
3. decode: image uint8 -> /127.5 - 1 (spec 7.3), depth raw -> raw / 65536 * 2 - 1 (spec 5.1),
   label int64, optional embedding float32;
4. joint x-flip of image and depth with p = 0.5; the embedding is *not* flipped (spec 6.5:
   mirrored reals use the un-mirrored image's embedding);
5. batching into ``gp3d.types.Batch`` and a per-worker share of the epoch's batches, so an
   epoch has exactly ``num_batches`` batches per rank whatever the number of workers
   (``with_epoch`` would count per worker).

Every random stage seeds itself from (seed, rank, worker, pass over the data), so a run is
reproducible for fixed (seed, world size, num_workers); with persistent workers each pass
(epoch) draws new shards, shuffles and flips.
"""

import io
import random
from collections.abc import Iterator
from dataclasses import fields
from itertools import islice
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from gp3d.types import Batch

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")


class PinnableBatch(Batch):
    """``Batch`` that ``DataLoader(pin_memory=True)`` knows how to pin."""

    def pin_memory(self) -> "PinnableBatch":
        return PinnableBatch(
            **{
                f.name: None if (v := getattr(self, f.name)) is None else v.pin_memory()
                for f in fields(self)
            }
        )


def decode_image(data: bytes) -> torch.Tensor:
    """Encoded 8-bit image -> float ``[3, H, W]`` in [-1, 1] (uint8 / 127.5 - 1, spec 7.3)."""
    with Image.open(io.BytesIO(data)) as img:
        arr = np.asarray(img.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


def decode_depth(data: bytes) -> torch.Tensor:
    """Depth PNG -> float ``[1, H, W]`` = raw / 65536 * 2 - 1 (spec 5.1).

    16-bit PNGs are used as is; 8-bit ones (ZoeDepth-style) are multiplied by 256; of a
    multi-channel PNG, channel 0 is used (as the original loader does).
    """
    with Image.open(io.BytesIO(data)) as img:
        arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr[..., 0]
    raw = arr.astype(np.float32) * (256.0 if arr.dtype == np.uint8 else 1.0)
    return torch.from_numpy(raw)[None] / 65536.0 * 2.0 - 1.0


def decode_embedding(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32))


class Decode:
    """Raw tar sample dict -> dict of tensors (image, depth, label[, embedding])."""

    def __init__(self, resolution: int, use_embeddings: bool) -> None:
        self.resolution = resolution
        self.use_embeddings = use_embeddings

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        where = f"sample {sample.get('__key__')} of {sample.get('__url__')}"
        image_key = next((k for k in IMAGE_KEYS if k in sample), None)
        if image_key is None or "depth.png" not in sample:
            raise ValueError(f"{where} lacks an image ({'/'.join(IMAGE_KEYS)}) or depth.png")
        image, depth = decode_image(sample[image_key]), decode_depth(sample["depth.png"])
        size = (self.resolution, self.resolution)
        if image.shape[1:] != size or depth.shape[1:] != size:
            raise ValueError(
                f"{where}: image {tuple(image.shape[1:])} / depth {tuple(depth.shape[1:])}, "
                f"expected {size} (the manifest's resolution)"
            )
        cls = sample.get("cls")
        out = {"image": image, "depth": depth, "label": int(cls) if cls is not None else 0}
        if self.use_embeddings:
            if "emb.npy" not in sample:
                raise ValueError(f"{where} has no emb.npy but embeddings were requested")
            out["embedding"] = decode_embedding(sample["emb.npy"])
        return out


def _worker() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class _Seeded:
    """A stage with a fresh RNG per pass, seeded by (seed, salt, rank, worker, pass)."""

    salt = 0

    def __init__(self, seed: int, rank: int) -> None:
        self.seed, self.rank, self.passes = seed, rank, 0

    def _rng(self) -> random.Random:
        state = [self.seed, self.salt, self.rank, _worker()[0], self.passes]
        self.passes += 1
        return random.Random(int(np.random.SeedSequence(state).generate_state(1)[0]))


class Shuffle(_Seeded):
    """Buffer shuffle: keep ``bufsize`` samples, emit a random one for every sample read."""

    salt = 1

    def __init__(self, bufsize: int, seed: int, rank: int) -> None:
        super().__init__(seed, rank)
        self.bufsize = bufsize

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        rng, buf = self._rng(), []
        for sample in src:
            if len(buf) < self.bufsize:
                buf.append(sample)
                continue
            i = rng.randrange(len(buf))
            buf[i], sample = sample, buf[i]
            yield sample
        rng.shuffle(buf)
        yield from buf


class RandomXFlip(_Seeded):
    """Mirror image and depth together (spec 5.1) with probability ``p``; not the embedding."""

    salt = 2

    def __init__(self, p: float, seed: int, rank: int) -> None:
        super().__init__(seed, rank)
        self.p = p

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        rng = self._rng()
        for sample in src:
            if rng.random() < self.p:
                sample = {
                    **sample,
                    "image": sample["image"].flip(-1),
                    "depth": sample["depth"].flip(-1),
                }
            yield sample


class SplitByNode:
    """Keep every ``world_size``-th item starting at ``rank`` (explicit, so no dist calls)."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def __call__(self, src: Iterator) -> Iterator:
        return islice(src, self.rank, None, self.world_size)


class TakeWorkerShare:
    """This DataLoader worker's share of ``num_batches`` (shares differ by at most one)."""

    def __init__(self, num_batches: int) -> None:
        self.num_batches = num_batches

    def __call__(self, src: Iterator) -> Iterator:
        worker, num_workers = _worker()
        share = self.num_batches // num_workers + int(worker < self.num_batches % num_workers)
        return islice(src, share)


def collate(samples: list[dict[str, Any]]) -> PinnableBatch:
    emb = [s["embedding"] for s in samples if "embedding" in s]
    return PinnableBatch(
        image=torch.stack([s["image"] for s in samples]),
        depth=torch.stack([s["depth"] for s in samples]),
        label=torch.tensor([s["label"] for s in samples], dtype=torch.int64),
        embedding=torch.stack(emb) if emb else None,
    )


class EpochPipeline(wds.DataPipeline):
    """A ``DataPipeline`` whose ``len()`` is the number of batches per pass.

    (``DataPipeline.with_length`` creates an unpicklable dynamic class, which breaks DataLoader
    workers under the spawn / forkserver start methods, e.g. inside ``ddp_spawn``.)
    """

    def __init__(self, *stages: Any, num_batches: int) -> None:
        super().__init__(*stages)
        self.num_batches = num_batches

    def __len__(self) -> int:
        return self.num_batches


def _same_stream_everywhere() -> int:
    return 0  # ResampledShards' worker seed: one stream, then split by node and worker


def make_pipeline(
    urls: list[str],
    *,
    resolution: int,
    per_device_batch: int,
    num_batches: int,
    rank: int = 0,
    world_size: int = 1,
    shuffle_buffer: int = 1000,
    xflip: bool = True,
    use_embeddings: bool = False,
    seed: int = 0,
) -> EpochPipeline:
    """An IterableDataset yielding ``num_batches`` batches of ``per_device_batch`` per pass."""
    shards = wds.ResampledShards(
        urls, seed=seed, deterministic=True, worker_seed=_same_stream_everywhere
    )
    stages = [
        shards,
        SplitByNode(rank, world_size),
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        Shuffle(shuffle_buffer, seed, rank),
        wds.map(Decode(resolution, use_embeddings)),
    ]
    if xflip:
        stages.append(RandomXFlip(0.5, seed, rank))
    stages += [
        wds.batched(per_device_batch, collation_fn=collate, partial=False),
        TakeWorkerShare(num_batches),
    ]
    return EpochPipeline(*stages, num_batches=num_batches)
