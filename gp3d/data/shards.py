"""WebDataset pipeline: resampled shards -> decoded, shuffled, flipped samples -> ``Batch``.

The shard format is documented in ``data_prep/common.py``. Stages, in order:

1. an infinite stream of shards drawn with replacement (``wds.ResampledShards``), identical in
   every process, then split by node (explicit rank / world size from Lightning) and by
   DataLoader worker, so ranks and workers read disjoint positions of one stream;
2. tar -> samples (``gp3d.data.tar_samples``, webdataset's sample semantics) through a shuffle
   buffer, which holds where a sample's bytes are and reads them when it emits the sample;
3. decode to raw arrays: image uint8, depth raw 16 bit, label, optional embedding float32;
4. joint x-flip of image and depth with p = 0.5; the embedding is *not* flipped (spec 6.5:
   mirrored reals use the un-mirrored image's embedding);
5. batching into ``gp3d.types.Batch``, normalising once per batch: image uint8 / 127.5 - 1
   (spec 7.3), depth raw / 65536 * 2 - 1 (spec 5.1), label int64; and a per-worker share of
   the epoch's batches, so an epoch has exactly ``num_batches`` batches per rank whatever the
   number of workers (``with_epoch`` would count per worker).

Every random stage seeds itself from (seed, rank, worker, pass over the data), so a run is
reproducible for fixed (seed, world size, num_workers); with persistent workers each pass
(epoch) draws new shards, shuffles and flips.
"""

import random
from collections.abc import Iterator
from dataclasses import fields
from itertools import islice
from typing import Any

import numpy as np
import torch
import webdataset as wds

from gp3d.data.decode import (  # noqa: F401 - decode_* / Decode re-exported (bench, tests)
    IMAGE_KEYS,
    Decode,
    DecodeRaw,
    decode_depth,
    decode_embedding,
    decode_image,
    normalise_depths,
    normalise_images,
)
from gp3d.data.tar_samples import LoadSamples, tar_sample_refs
from gp3d.types import Batch


class PinnableBatch(Batch):
    """``Batch`` that ``DataLoader(pin_memory=True)`` knows how to pin."""

    def pin_memory(self) -> "PinnableBatch":
        return PinnableBatch(
            **{
                f.name: None if (v := getattr(self, f.name)) is None else v.pin_memory()
                for f in fields(self)
            }
        )


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
    """Mirror image and depth together (spec 5.1) with probability ``p``; not the embedding.

    Works on :class:`DecodeRaw` samples (``[H, W, ...]`` arrays): a flip is a view, copied
    once when the batch is stacked."""

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
                    "image": sample["image"][:, ::-1],
                    "depth": sample["depth"][:, ::-1],
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
    """:class:`DecodeRaw` samples -> a normalised batch (stacked raw, normalised in place)."""
    emb = [s["embedding"] for s in samples if "embedding" in s]
    return PinnableBatch(
        image=normalise_images(torch.from_numpy(np.stack([s["image"] for s in samples]))),
        depth=normalise_depths(torch.from_numpy(np.stack([s["depth"] for s in samples]))),
        label=torch.tensor([s["label"] for s in samples], dtype=torch.int64),
        embedding=torch.from_numpy(np.stack(emb)) if emb else None,
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
        tar_sample_refs,  # where each member is; read after the shuffle
        Shuffle(shuffle_buffer, seed, rank),
        LoadSamples(),
        wds.map(DecodeRaw(resolution, use_embeddings)),
    ]
    if xflip:
        stages.append(RandomXFlip(0.5, seed, rank))
    stages += [
        wds.batched(per_device_batch, collation_fn=collate, partial=False),
        TakeWorkerShare(num_batches),
    ]
    return EpochPipeline(*stages, num_batches=num_batches)
