"""Real-image feature statistics, computed once per (dataset, resolution, feature network, number
of images, class) and cached on disk (spec 8.1: real statistics with mirror off, cached).

The cache key starts with the shard manifest's sha256, and the manifest lists every shard's
sha256, so re-written data never reuses stale statistics. Files are written atomically.

Under DDP every rank reads a share of the shards, the float64 sums are all-reduced, rank 0
writes the cache and the others wait at a barrier: every rank ends with identical statistics.
"""

import json
import os
import re
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

import gp3d
from gp3d.data.decode import IMAGE_KEYS, decode_image_u8
from gp3d.data.format import manifest_sha256, read_manifest, shard_paths
from gp3d.data.tar_samples import tar_samples
from gp3d.metrics.distributed import (
    all_reduce_sum,
    barrier,
    broadcast_tensor,
    broadcast_value,
    gather_rows,
    rank_and_world,
)
from gp3d.metrics.feature_net import FeatureNetwork
from gp3d.metrics.fid import FeatureStats

CACHE_VERSION = 1


class ShardImages(IterableDataset):
    """(index, uint8 image [3, H, W]) of the given shards, each at most ``limit`` items, no
    mirroring. ``index`` is the item's position in the dataset (``offsets[i]`` = that of shard
    ``i``'s first item; default: consecutive from 0), so an order that does not depend on
    workers or ranks can be restored.

    Shards are split over DataLoader workers. ``class_index`` keeps only that class's images
    (the limits count items before that filter).
    """

    def __init__(
        self,
        shards: list[tuple[str, int]],
        class_index: int | None = None,
        offsets: list[int] | None = None,
    ) -> None:
        self.shards, self.class_index = shards, class_index
        self.offsets = offsets if offsets is not None else _offsets(shards)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i, (path, limit) in enumerate(self.shards):
            if i % workers != worker:
                continue
            # the training loader's tar reader and decoder: same samples, same errors
            for j, sample in enumerate(tar_samples([{"url": path}])):
                if j >= limit:
                    break
                if (
                    self.class_index is not None
                    and int(sample.get("cls", b"0")) != self.class_index
                ):
                    continue
                ext = next((e for e in IMAGE_KEYS if e in sample), None)
                if ext is None:
                    raise ValueError(
                        f"sample {sample['__key__']} of {path} has no image ({'/'.join(IMAGE_KEYS)})"
                    )
                arr = decode_image_u8(sample[ext])
                yield self.offsets[i] + j, torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _offsets(shards: list[tuple[str, int]]) -> list[int]:
    """Dataset position of each shard's first item (shards in manifest order)."""
    out, total = [], 0
    for _, limit in shards:
        out.append(total)
        total += limit
    return out


def shard_limits(manifest: dict, folder: str, max_items: int | None) -> list[tuple[str, int]]:
    """(shard path, items to read) covering the first ``max_items`` items in manifest order."""
    out, left = [], max_items if max_items is not None else float("inf")
    for path, shard in zip(shard_paths(folder, manifest), manifest["shards"]):
        if left <= 0:
            break
        take = int(min(shard["num_samples"], left))
        out.append((path, take))
        left -= take
    return out


@dataclass
class RealStats:
    mean: np.ndarray
    cov: np.ndarray
    n: int
    features: torch.Tensor | None = None  # a subset of real features (KID, precision/recall)
    meta: dict = field(default_factory=dict)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def cache_name(
    manifest: dict,
    net_name: str,
    max_items: int | None = None,
    class_index: int | None = None,
    keep_features: int = 0,
) -> str:
    """``<manifest sha[:16]>_<res>_<net>_<n>[_c<class>][_f<kept features>].npz``."""
    total = int(manifest["num_samples"])
    n = total if max_items is None else min(int(max_items), total)
    name = f"{manifest_sha256(manifest)[:16]}_{manifest['resolution']}_{_safe(net_name)}_{n}"
    if class_index is not None:
        name += f"_c{class_index}"
    if keep_features:
        name += f"_f{keep_features}"
    return name + ".npz"


def save_stats(path: Path, stats: RealStats) -> None:
    """Atomic .npz write (temp file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    arrays = {"mean": stats.mean, "cov": stats.cov, "n": np.array(stats.n)}
    if stats.features is not None:
        arrays["features"] = stats.features.numpy().astype(np.float32)
    arrays["meta"] = np.array(json.dumps(stats.meta))
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_stats(path: Path) -> RealStats:
    with np.load(path, allow_pickle=False) as z:
        feats = torch.from_numpy(z["features"]) if "features" in z else None
        return RealStats(z["mean"], z["cov"], int(z["n"]), feats, json.loads(str(z["meta"])))


def _read_valid(path: Path, net: FeatureNetwork) -> RealStats | None:
    if not path.is_file():  # written atomically, so a visible file is complete
        return None
    try:
        cached = load_stats(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:  # damaged from outside
        warnings.warn(
            f"ignoring unreadable FID statistics cache {path} ({err}); recomputing", stacklevel=3
        )
        return None
    if cached.meta.get("feature_net") != net.name or cached.meta.get("dim") != net.dim:
        return None
    return cached


def _share(stats: RealStats | None) -> RealStats | None:
    """Rank 0's (possibly absent) cached statistics on every rank."""
    have = broadcast_value(float(stats is not None))
    if not have:
        return None
    src = stats if stats is not None else RealStats(None, None, 0)
    mean = broadcast_tensor(None if stats is None else torch.from_numpy(src.mean)).numpy()
    cov = broadcast_tensor(None if stats is None else torch.from_numpy(src.cov)).numpy()
    n = int(broadcast_value(float(src.n)))
    has_feats = broadcast_value(float(src.features is not None))
    feats = broadcast_tensor(src.features) if has_feats else None
    meta = [src.meta]
    torch.distributed.broadcast_object_list(meta, 0)
    return RealStats(mean, cov, n, feats, meta[0])


@torch.no_grad()
def compute_real_stats(
    folder: str,
    manifest: dict,
    net: FeatureNetwork,
    batch_size: int = 64,
    num_workers: int = 0,
    max_items: int | None = None,
    class_index: int | None = None,
    keep_features: int = 0,
    device: torch.device | str = "cpu",
) -> RealStats:
    """Feature statistics of the dataset's images (call on every rank under DDP)."""
    rank, world = rank_and_world()
    every = shard_limits(manifest, folder, max_items)
    shards, offsets = every[rank::world], _offsets(every)[rank::world]
    loader = DataLoader(
        ShardImages(shards, class_index, offsets),
        batch_size=batch_size,
        num_workers=min(num_workers, len(shards)),
    )
    start = time.perf_counter()
    stats = FeatureStats.empty(net.dim)
    kept_idx, kept = torch.zeros(0, dtype=torch.int64), torch.zeros(0, net.dim)
    for index, images in loader:
        feats = net(images.to(device)).cpu()
        stats.update(feats)
        if keep_features:
            # the kept features are those of the first ``keep_features`` images in dataset
            # order, whatever the number of ranks and workers: each rank keeps its own first
            # ``keep_features`` (the global first ones are among them), merged below
            kept_idx, kept = torch.cat([kept_idx, index.long()]), torch.cat([kept, feats.float()])
            if kept_idx.shape[0] > 2 * keep_features:
                kept_idx, kept = _first(kept_idx, kept, keep_features)
    n = int(all_reduce_sum(torch.tensor([stats.n], dtype=torch.float64)).item())
    total = FeatureStats(n, all_reduce_sum(stats.total), all_reduce_sum(stats.outer))
    if n < 2:
        what = f"class {class_index} of " if class_index is not None else ""
        raise ValueError(f"{what}{folder} has {n} images: too few for feature statistics")
    features = None
    if keep_features:
        kept_idx, kept = _first(kept_idx, kept, keep_features)
        features = _first(gather_rows(kept_idx), gather_rows(kept), keep_features)[1]
    seconds = time.perf_counter() - start
    meta = {
        "version": CACHE_VERSION,
        "feature_net": net.name,
        "dim": net.dim,
        "num_images": n,
        "resolution": int(manifest["resolution"]),
        "manifest_sha256": manifest_sha256(manifest),
        "data_path": str(Path(folder).resolve()),
        "class_index": class_index,
        "mirror": False,
        "seconds": seconds,
        "world_size": world,
        "gp3d_version": gp3d.__version__,
    }
    return RealStats(total.mean, total.cov, n, features, meta)


def _first(index: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` rows with the smallest indices, in index order."""
    order = index.argsort()[:k]
    return index[order], rows[order]


def real_stats(
    folder: str,
    net: FeatureNetwork,
    cache_dir: str | os.PathLike | None,
    batch_size: int = 64,
    num_workers: int = 0,
    max_items: int | None = None,
    class_index: int | None = None,
    keep_features: int = 0,
    device: torch.device | str = "cpu",
    manifest: dict | None = None,
) -> RealStats:
    """Cached real statistics: read ``cache_dir/<cache_name>`` if present and consistent,
    otherwise compute (all ranks), write (rank 0) and wait (barrier). ``cache_dir=None``
    disables the cache."""
    manifest = manifest or read_manifest(folder)
    path = None
    if cache_dir is not None:
        name = cache_name(manifest, net.name, max_items, class_index, keep_features)
        path = Path(cache_dir) / name
        # rank 0 decides and shares what it read: every rank takes the same branch (the
        # collectives below), even when the cache folder is not shared between nodes
        cached = _read_valid(path, net) if rank_and_world()[0] == 0 else None
        if rank_and_world()[1] > 1:
            cached = _share(cached)
        if cached is not None:
            cached.meta["cache"] = str(path)
            return cached
    stats = compute_real_stats(
        folder,
        manifest,
        net,
        batch_size,
        num_workers,
        max_items,
        class_index,
        keep_features,
        device,
    )
    if path is not None:
        if rank_and_world()[0] == 0:
            save_stats(path, stats)
        barrier()
        stats.meta["cache"] = str(path)
    return stats
