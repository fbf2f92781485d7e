"""``python -m gp3d.bench.loader DATASET``: training-loader images/s on a shard folder.

Two loaders, in images per CPU-second of this process, passes interleaved and the best of ``--repeats`` kept (no loader pays a warm-up or
a busy moment of a shared machine alone), both in the main process (``num_workers=0``, so the
figure is per core):

* ``gp3d``: ``gp3d.data.shards.make_pipeline`` as training uses it (gp3d's tar reader with
  positional reads after the shuffle, webdataset's ``Decoder`` and error handlers, batching);
* ``webdataset tar``: the same stages with webdataset's own tar reading and sample grouping
  (``wds.tarfile_to_samples``) in place of gp3d's reader (``gp3d/data/tar_samples.py``).

Make a dataset first, e.g. photographs through the real chain:
``python -m data_prep.bench --dir /tmp/b --images 300`` leaves ``/tmp/b/shards``.
"""

import argparse
import os
import time
from collections.abc import Iterable

import torch
import webdataset as wds

from gp3d.data.bad_samples import SkipTally
from gp3d.data.format import read_manifest, shard_paths
from gp3d.data.shards import (
    AttachSkipped,
    DecodeRaw,
    EpochPipeline,
    NextPass,
    PassShards,
    Shuffle,
    SplitByNode,
    SplitByWorker,
    StreamPosition,
    TakeWorkerShare,
    collate,
    make_pipeline,
)


def webdataset_tar_pipeline(
    urls: list[str], resolution: int, batch: int, num_batches: int, shuffle_buffer: int
) -> EpochPipeline:
    """``make_pipeline``'s stages with webdataset's tar reader and grouping (bytes are read
    before the shuffle buffer, as webdataset does)."""
    position, tally = StreamPosition(), SkipTally(0.5)
    return EpochPipeline(
        PassShards(urls, 0, position), NextPass(position), SplitByNode(0, 1),
        SplitByWorker(position), wds.tarfile_to_samples(handler=tally.handler),
        Shuffle(shuffle_buffer, 0, 0, position),
        wds.map(DecodeRaw(resolution, False), handler=tally.handler),
        wds.batched(batch, collation_fn=collate, partial=False), AttachSkipped(tally),
        TakeWorkerShare(num_batches, position), num_batches=num_batches,
    )  # fmt: skip


def images_per_second(loader: Iterable, batch: int) -> float:
    """Images per second of this process's CPU time: on a shared machine, wall time measures
    the other jobs as much as the loader (the loader runs in this one thread)."""
    t0, n = time.process_time(), 0
    for _ in loader:
        n += batch
    return n / (time.process_time() - t0)


def run(path: str, batch: int, num_images: int, repeats: int, shuffle_buffer: int) -> dict:
    manifest = read_manifest(path)
    urls, res = shard_paths(path, manifest), int(manifest["resolution"])
    nb = max(1, num_images // batch)
    loaders = {
        "gp3d": make_pipeline(
            urls,
            resolution=res,
            per_device_batch=batch,
            num_batches=nb,
            shuffle_buffer=shuffle_buffer,
            xflip=False,
        ),  # fmt: skip
        "webdataset tar": webdataset_tar_pipeline(urls, res, batch, nb, shuffle_buffer),
    }
    passes: dict[str, list[float]] = {k: [] for k in loaders}
    for _ in range(repeats):
        for name, loader in loaders.items():
            passes[name].append(images_per_second(loader, batch))
    return {"resolution": res, "passes": passes, "best": {k: max(v) for k, v in passes.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gp3d.bench.loader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("dataset", help="shard folder with manifest.json")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=1024, help="images per pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shuffle-buffer", type=int, default=500)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = run(args.dataset, args.batch, args.images, args.repeats, args.shuffle_buffer)
    for name, rates in out["passes"].items():
        print(f"{name:<16} {out['best'][name]:8.0f} images/CPU-s (passes: "
              + " ".join(f"{r:.0f}" for r in rates) + ")")  # fmt: skip
    ratio = out["best"]["gp3d"] / out["best"]["webdataset tar"]
    print(f"gp3d / webdataset tar: {ratio:.2f}x at {out['resolution']} px, batch {args.batch}, "
          f"1 process, {os.cpu_count()} cores visible, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
