"""WebDataset pipeline: resampled shards -> decoded, shuffled, flipped samples -> ``Batch``.

The shard format is documented in ``data_prep/common.py``. Stages, in order:

1. an infinite stream of shards drawn with replacement (``wds.ResampledShards``), identical in
   every process, then split by node (explicit rank / world size from Lightning) and by
   DataLoader worker, so ranks and workers read disjoint positions of one stream;
2. tar -> samples (``gp3d.data.tar_samples``, webdataset's sample semantics) through a shuffle
   buffer, which holds where a sample's bytes are and reads them when it emits the sample;
3. decode to raw arrays with webdataset's ``Decoder`` (``DecodeRaw``): image uint8, depth raw
   16 bit, label, optional embedding float32; a bad sample (or a corrupt shard in stage 2) is
   skipped and counted by webdataset-style error handlers (``gp3d.data.bad_samples``), and the
   counts ride to the main process in the batches (``PinnableBatch.skipped``);
4. joint x-flip of image and depth with p = 0.5; the embedding is *not* flipped (spec 6.5:
   mirrored reals use the un-mirrored image's embedding);
5. batching into ``gp3d.types.Batch``, normalising once per batch: image uint8 / 127.5 - 1
   (spec 7.3), depth raw / 65536 * 2 - 1 (spec 5.1), label int64; and a per-worker share of
   the epoch's batches, so an epoch has exactly ``num_batches`` batches per rank whatever the
   number of workers (``with_epoch`` would count per worker).

Every random stage seeds itself from (seed, rank, worker, pass over the data), so a run is
reproducible for fixed (seed, world size, num_workers); with persistent workers each pass
(epoch) draws new shards, shuffles and flips.

Resume (:class:`StreamPosition`): a run restored after ``skip_batches`` batches of pass
``start_pass`` starts every stage at that pass and drops the samples the first pass had already
used as *references*, before any bytes are read or decoded (the flip RNG skips their draws), so
it yields exactly the batches the uninterrupted run would have yielded next, for the cost of
reading tar headers.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import partial
from itertools import islice
from typing import Any

import numpy as np
import torch
import webdataset as wds

from gp3d.data.bad_samples import SkipEvent, SkipTally
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


@dataclass
class PinnableBatch(Batch):
    """``Batch`` that ``DataLoader(pin_memory=True)`` knows how to pin, carrying the samples its
    worker skipped since its previous batch to the main process (``gp3d.data.bad_samples``)."""

    skipped: tuple[SkipEvent, ...] = ()

    def pin_memory(self) -> "PinnableBatch":
        pinned = {
            f.name: v.pin_memory() if isinstance(v := getattr(self, f.name), torch.Tensor) else v
            for f in fields(self)
        }
        return PinnableBatch(**pinned)


def _worker() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class StreamPosition:
    """Which pass over the data this process's pipeline is in, and where a resumed run starts.

    One object shared by the stages of a pipeline (each DataLoader worker holds its own copy).
    :class:`NextPass` advances it when a pass is built, before any stage draws. A resumed run
    starts at pass ``start_pass`` with ``skip_batches`` batches of it used. Its DataLoader takes
    the first batch from worker 0, which must therefore play the worker that would have given
    batch ``skip_batches``: on that first pass, physical worker ``i`` acts as worker
    ``(i + skip_batches) % num_workers`` (shard split, seeds and share alike).
    """

    def __init__(self, start_pass: int = 0, skip_batches: int = 0, per_device_batch: int = 1):
        self.start_pass, self.skip_batches = start_pass, skip_batches
        self.per_device_batch = per_device_batch
        self.current_pass = start_pass - 1

    @property
    def resuming(self) -> bool:
        return self.current_pass == self.start_pass and self.skip_batches > 0

    def worker(self) -> tuple[int, int]:
        """(worker id as far as the data stream goes, number of workers)."""
        worker, num_workers = _worker()
        if self.resuming:
            worker = (worker + self.skip_batches) % num_workers
        return worker, num_workers

    def used_batches(self) -> int:
        """Batches this worker had given in the current pass before the resume."""
        if not self.resuming:
            return 0
        worker, num_workers = self.worker()
        return max(0, (self.skip_batches - worker + num_workers - 1) // num_workers)


def _same_stream_everywhere() -> int:
    return 0  # ResampledShards' worker seed: one stream, then split by node and worker


class PassShards(wds.ResampledShards):
    """``wds.ResampledShards`` whose per-pass seed follows :class:`StreamPosition` rather than
    its own count of iterations (a worker with nothing left to give in a resumed pass is never
    iterated, so its count would fall behind)."""

    def __init__(self, urls: list[str], seed: int, position: StreamPosition) -> None:
        super().__init__(urls, seed=seed, deterministic=True, worker_seed=_same_stream_everywhere)
        self.position = position

    def __iter__(self):
        self.epoch = self.position.current_pass - 1  # the base class adds 1, then seeds
        yield from super().__iter__()


class NextPass:
    """Pipeline stage (a plain function call, run when a pass is built): advance the pass."""

    def __init__(self, position: StreamPosition) -> None:
        self.position = position

    def __call__(self, src: Iterator) -> Iterator:
        self.position.current_pass += 1
        return src


class SplitByWorker:
    """Every ``num_workers``-th item from the (logical) worker's id on (webdataset's rule)."""

    def __init__(self, position: StreamPosition) -> None:
        self.position = position

    def __call__(self, src: Iterator) -> Iterator:
        worker, num_workers = self.position.worker()
        return islice(src, worker, None, num_workers)


class SkipUsed:
    """Drop the samples this worker had used in a resumed pass, as references (nothing read)."""

    def __init__(self, position: StreamPosition) -> None:
        self.position = position

    def __call__(self, src: Iterator) -> Iterator:
        used = self.position.used_batches() * self.position.per_device_batch
        return islice(src, used, None)


class _Seeded:
    """A stage with a fresh RNG per pass, seeded by (seed, salt, rank, worker, pass)."""

    salt = 0

    def __init__(self, seed: int, rank: int, position: StreamPosition) -> None:
        self.seed, self.rank, self.position = seed, rank, position

    def _rng(self) -> random.Random:
        pos = self.position
        state = [self.seed, self.salt, self.rank, pos.worker()[0], pos.current_pass]
        return random.Random(int(np.random.SeedSequence(state).generate_state(1)[0]))


class Shuffle(_Seeded):
    """Buffer shuffle: keep ``bufsize`` samples, emit a random one for every sample read."""

    salt = 1

    def __init__(self, bufsize: int, seed: int, rank: int, position: StreamPosition) -> None:
        super().__init__(seed, rank, position)
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
    once when the batch is stacked. (Not kornia's RandomHorizontalFlip: that works on tensors,
    per batch, and would draw from torch's RNG instead of this stage's resumable stream.)"""

    salt = 2

    def __init__(self, p: float, seed: int, rank: int, position: StreamPosition) -> None:
        super().__init__(seed, rank, position)
        self.p = p

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        rng = self._rng()
        for _ in range(self.position.used_batches() * self.position.per_device_batch):
            rng.random()  # the draws of the samples SkipUsed dropped
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
    """This DataLoader worker's share of ``num_batches`` (shares differ by at most one), less
    the batches it had already given on the first pass of a resumed run."""

    def __init__(self, num_batches: int, position: StreamPosition) -> None:
        self.num_batches, self.position = num_batches, position

    def __call__(self, src: Iterator) -> Iterator:
        worker, num_workers = self.position.worker()
        share = self.num_batches // num_workers + int(worker < self.num_batches % num_workers)
        return islice(src, max(share - self.position.used_batches(), 0))


def collate(samples: list[dict[str, Any]]) -> PinnableBatch:
    """:class:`DecodeRaw` samples -> a normalised batch (stacked raw, normalised in place)."""
    emb = [s["embedding"] for s in samples if "embedding" in s]
    return PinnableBatch(
        image=normalise_images(torch.from_numpy(np.stack([s["image"] for s in samples]))),
        depth=normalise_depths(torch.from_numpy(np.stack([s["depth"] for s in samples]))),
        label=torch.tensor([s["label"] for s in samples], dtype=torch.int64),
        embedding=torch.from_numpy(np.stack(emb)) if emb else None,
    )


class AttachSkipped:
    """Pipeline stage after batching: put the events the tally collected since the previous
    batch into this batch (to reach the main process), and count its samples as good."""

    def __init__(self, tally: SkipTally) -> None:
        self.tally = tally

    def __call__(self, src: Iterator[PinnableBatch]) -> Iterator[PinnableBatch]:
        for batch in src:
            batch.skipped = self.tally.drain()
            self.tally.add_good(batch.image.shape[0])
            yield batch


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
    start_pass: int = 0,
    skip_batches: int = 0,
    num_classes: int | None = None,
    embedding_dim: int | None = None,
    max_bad_fraction: float = 0.01,
    bad_min_samples: int = 1000,
) -> EpochPipeline:
    """An IterableDataset yielding ``num_batches`` batches of ``per_device_batch`` per pass; a
    resumed run starts at pass ``start_pass`` with ``skip_batches`` of it already used.

    Bad samples (``gp3d.data.bad_samples``) are skipped and counted; reading stops with
    ``TooMuchBadData`` past ``max_bad_fraction`` of the samples read. (A skipped sample shifts
    a resumed run's position by one sample: :class:`SkipUsed` counts references, not decodes.)"""
    if not 0 <= skip_batches < num_batches:
        raise ValueError(f"skip_batches={skip_batches} must be in [0, num_batches={num_batches})")
    position = StreamPosition(start_pass, skip_batches, per_device_batch)
    tally = SkipTally(max_bad_fraction, bad_min_samples)  # one per worker (each has a copy)
    stages = [
        PassShards(urls, seed, position),
        NextPass(position),
        SplitByNode(rank, world_size),
        SplitByWorker(position),
        partial(tar_sample_refs, handler=tally.handler),  # where members are; read later
        Shuffle(shuffle_buffer, seed, rank, position),
        SkipUsed(position),
        LoadSamples(handler=tally.handler),
        wds.map(
            DecodeRaw(resolution, use_embeddings, num_classes, embedding_dim), handler=tally.handler
        ),
    ]
    if xflip:
        stages.append(RandomXFlip(0.5, seed, rank, position))
    stages += [
        wds.batched(per_device_batch, collation_fn=collate, partial=False),
        AttachSkipped(tally),
        TakeWorkerShare(num_batches, position),
    ]
    return EpochPipeline(*stages, num_batches=num_batches)
