"""Instance selection (spec 9 step 1): keep the most typical images of each class.

    python -m data_prep.select_instances /data/imagenet --out data/imagenet_selection.txt \\
        --keep-ratio 0.5 --feature-net inception --workers 8

1. Features of every image with a ``gp3d.metrics.feature_net`` network (``inception``: the FID
   InceptionV3 pool features, as the original; ``fid-helper``, a TorchScript ``.pt`` file, or
   ``random:<dim>`` for tests). Images are centre-cropped and resized to ``--image-size`` first
   (the original ran on already-resized images), uint8, batched on the GPU when present.
2. Per class folder (``--subdir-wise``, the default for class-folder trees, as the original did
   ImageNet) or over all images: a single full-covariance Gaussian, ``reg_covar`` on the diagonal
   (``data_prep/features/instance_scores.py``); each image's log-likelihood is its score.
3. Keep the top ``--keep-ratio`` (``floor(n * ratio)``, at least 1) or top ``--num-keep`` per
   group. The selection file lists the kept relative paths (what ``write_shards --select`` and
   ``estimate_depth --select`` read); ``<out>.json`` records parameters and per-class counts;
   ``<out>.scores.tsv`` every image's score. Unreadable images are left out and counted.

Features are cached in ``<out>.features/`` in atomically written chunks keyed by the feature
network and the image list, so an interrupted run resumes and changing only the keep ratio
reuses every feature.
"""

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from data_prep import common
from data_prep.depth.importer import write_atomic
from data_prep.features.instance_scores import (
    DEFAULT_REG_COVAR,
    gaussian_log_likelihood,
    num_to_keep,
    top_indices,
)
from data_prep.features.teacher import resolve_device
from data_prep.folder_source import ImageRecord, scan_image_folder, write_selection
from data_prep.images import ImageSkip, crop_resize, load_rgb

CHUNK = 4096  # images per cached feature file


@dataclass
class SelectionResult:
    path: Path
    num_images: int = 0
    num_kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    chunks_computed: int = 0
    chunks_reused: int = 0
    seconds: float = 0.0


class _Images(Dataset):
    """Image files -> (uint8 [3, S, S], ok); unusable files give zeros and ok = False."""

    def __init__(self, root: Path, relpaths: list[str], size: int) -> None:
        self.root, self.relpaths, self.size = root, relpaths, size

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, i: int):
        try:
            rgb = crop_resize(load_rgb(self.root / self.relpaths[i]), self.size)
            return torch.from_numpy(np.array(rgb)).permute(2, 0, 1), ""  # writable copy
        except ImageSkip as skip:
            reason = skip.reason
        except Exception as err:  # noqa: BLE001 - counted, never fatal
            reason = f"error: {type(err).__name__}"
        return torch.zeros(3, self.size, self.size, dtype=torch.uint8), reason


def _cache_dir(out: Path, net_name: str, records: list[ImageRecord], image_size: int) -> Path:
    digest = hashlib.sha256(f"{net_name}\n{image_size}\n".encode())
    for r in records:
        digest.update(f"{r.relpath}\n".encode())
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", net_name)
    return out.with_name(out.name + ".features") / f"{safe}-{digest.hexdigest()[:16]}"


def compute_features(
    net, device: torch.device, root: Path, records: list[ImageRecord], cache: Path,
    image_size: int, batch_size: int, workers: int, progress: bool, result: SelectionResult,
) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """Features ``[N, D]`` (float32) and a skip reason per image (``""`` = usable)."""
    cache.mkdir(parents=True, exist_ok=True)
    feats, reasons = [], []
    bar = tqdm(total=len(records), unit="img", disable=not progress, desc="select features")
    with bar:
        for start in range(0, len(records), CHUNK):
            path = cache / f"chunk-{start // CHUNK:06d}.npz"
            if path.is_file():
                with np.load(path, allow_pickle=False) as z:
                    feats.append(z["features"])
                    reasons += [str(r) for r in z["reasons"]]
                result.chunks_reused += 1
                bar.update(len(feats[-1]))
                continue
            rels = [r.relpath for r in records[start : start + CHUNK]]
            loader = DataLoader(_Images(root, rels, image_size), batch_size=batch_size,
                                num_workers=workers)  # fmt: skip
            chunk_feats, chunk_reasons = [], []
            with torch.inference_mode():
                for images, why in loader:
                    images = images.to(device, non_blocking=True)
                    chunk_feats.append(net(images).float().cpu().numpy())
                    chunk_reasons += list(why)
                    bar.update(len(why))
            f, r = np.concatenate(chunk_feats), np.array(chunk_reasons, dtype=str)
            tmp = common.temp_path(path)
            with open(tmp, "wb") as fh:
                np.savez(fh, features=f, reasons=r)
            os.replace(tmp, path)
            feats.append(f)
            reasons += chunk_reasons
            result.chunks_computed += 1
    return np.concatenate(feats), reasons


def select(
    features: np.ndarray, groups: np.ndarray, *, keep_ratio: float | None = None,
    num_keep: int | None = None, reg_covar: float = DEFAULT_REG_COVAR,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(kept mask ``[N]``, scores ``[N]``): top images per group value by Gaussian score."""
    kept = np.zeros(len(features), dtype=bool)
    scores = np.full(len(features), np.nan)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        if len(idx) == 1:
            kept[idx] = True
            continue
        scores[idx] = gaussian_log_likelihood(features[idx], reg_covar)
        kept[idx[top_indices(scores[idx], num_to_keep(len(idx), keep_ratio, num_keep))]] = True
    return kept, scores


def select_instances(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    keep_ratio: float | None = None,
    num_keep: int | None = None,
    subdir_wise: bool | None = None,
    reg_covar: float = DEFAULT_REG_COVAR,
    feature_net: str = "inception",
    image_size: int = 256,
    batch_size: int = 64,
    workers: int = 0,
    device: str | None = None,
    class_map: str | os.PathLike | None = None,
    train_subdir: bool = True,
    progress: bool = False,
) -> SelectionResult:
    """Write the selection file ``out`` for ``src`` (see the module docstring).

    ``subdir_wise`` None: per class for class-folder trees, global for a flat folder.
    """
    from gp3d.metrics.feature_net import load_feature_network

    num_to_keep(10, keep_ratio, num_keep)  # validates the arguments before any work
    t0 = time.perf_counter()
    index = scan_image_folder(src, class_map, train_subdir)
    subdir_wise = index.class_folders != [""] if subdir_wise is None else subdir_wise
    out, result = Path(out), SelectionResult(Path(out), num_images=len(index.records))
    dev = resolve_device(device)
    net = load_feature_network(feature_net, dev).eval()
    cache = _cache_dir(out, net.name, index.records, image_size)
    feats, reasons = compute_features(net, dev, index.root, index.records, cache, image_size,
                                      batch_size, workers, progress, result)  # fmt: skip
    usable = np.array([not r for r in reasons], dtype=bool)
    labels = np.array([r.label if subdir_wise else 0 for r in index.records])
    kept, scores = np.zeros(len(usable), bool), np.full(len(usable), np.nan)
    kept[usable], scores[usable] = select(
        feats[usable], labels[usable], keep_ratio=keep_ratio, num_keep=num_keep,
        reg_covar=reg_covar,
    )  # fmt: skip
    rels = [r.relpath for r in index.records]
    chosen = [rel for rel, k in zip(rels, kept, strict=True) if k]
    result.num_kept, result.skipped = len(chosen), dict(Counter(r for r in reasons if r))
    rule = f"keep_ratio={keep_ratio}" if keep_ratio is not None else f"num_keep={num_keep}"
    write_selection(out, chosen, header=(
        f"data_prep.select_instances: {len(chosen)} of {len(rels)} images of {index.root}\n"
        f"{rule} per {'class' if subdir_wise else 'dataset'}, feature net {net.name}, "
        f"reg_covar={reg_covar}"))  # fmt: skip
    per_class: dict[str, dict[str, int]] = {}
    for rec, k, ok in zip(index.records, kept, usable, strict=True):
        c = per_class.setdefault(index.class_names[rec.label], {"images": 0, "kept": 0})
        c["images"] += int(ok)
        c["kept"] += int(k)
    summary: dict[str, Any] = {
        "generator": "data_prep.select_instances",
        "source": str(index.root.resolve()),
        "feature_net": net.name,
        "image_size": image_size,
        "preprocessing": "centre crop + Lanczos resize to image_size, uint8 (spec 9 step 1)",
        "model": "single full-covariance Gaussian (GaussianMixture n_components=1), "
        "log-likelihood score",
        "reg_covar": reg_covar,
        "subdir_wise": subdir_wise,
        "keep_ratio": keep_ratio,
        "num_keep": num_keep,
        "num_images": len(rels),
        "num_kept": len(chosen),
        "skipped": result.skipped,
        "classes": per_class,
    }
    write_atomic(out.with_name(out.name + ".json"), json.dumps(summary, indent=2).encode())
    lines = "".join(
        f"{rel}\t{'' if np.isnan(s) else f'{s:.6g}'}\t{int(k)}\t{why}\n"
        for rel, s, k, why in zip(rels, scores, kept, reasons, strict=True)
    )
    write_atomic(out.with_name(out.name + ".scores.tsv"),
                 ("# relpath\tlog_likelihood\tkept\tskip_reason\n" + lines).encode())  # fmt: skip
    result.seconds = time.perf_counter() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.select_instances",
        description="Instance selection (spec 9 step 1): keep the images with the highest "
        "Gaussian log-likelihood of their Inception features, per class. Writes a selection "
        "file for write_shards --select. Resumable (features are cached).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("src", help="image folder: class folders (train/ used if present) or flat")
    parser.add_argument("--out", required=True, help="selection file to write (one path a line)")
    keep = parser.add_mutually_exclusive_group(required=True)
    keep.add_argument("--keep-ratio", type=float, help="fraction kept per group, in (0, 1]")
    keep.add_argument("--num-keep", type=int, help="images kept per group")
    wise = parser.add_mutually_exclusive_group()
    wise.add_argument("--subdir-wise", dest="subdir_wise", action="store_true", default=None,
                      help="one Gaussian per class folder (default for class-folder trees)")  # fmt: skip
    wise.add_argument("--global", dest="subdir_wise", action="store_false",
                      help="one Gaussian over all images")  # fmt: skip
    parser.add_argument("--reg-covar", type=float, default=DEFAULT_REG_COVAR,
                        help="added to the covariance diagonal")  # fmt: skip
    parser.add_argument("--feature-net", default="inception", help="inception | fid-helper | "
                        "<file>.pt | random:<dim> (tests)")  # fmt: skip
    parser.add_argument("--image-size", type=int, default=256, help="crop+resize before features")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="image decoding processes (0 = this one)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto = cuda if available, else cpu")
    parser.add_argument("--class-map", help="class mapping file (as write_shards)")
    parser.add_argument("--no-train-subdir", action="store_true", help="ignore SRC/train/")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        res = select_instances(
            args.src, args.out, keep_ratio=args.keep_ratio, num_keep=args.num_keep,
            subdir_wise=args.subdir_wise, reg_covar=args.reg_covar, feature_net=args.feature_net,
            image_size=args.image_size, batch_size=args.batch_size, workers=args.workers,
            device=args.device, class_map=args.class_map, train_subdir=not args.no_train_subdir,
            progress=not args.quiet,
        )  # fmt: skip
    except (common.DatasetError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"{res.path}: kept {res.num_kept} of {res.num_images} images in {res.seconds:.1f} s "
        f"(feature chunks: {res.chunks_computed} computed, {res.chunks_reused} cached); "
        f"skipped {res.skipped or 'none'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
