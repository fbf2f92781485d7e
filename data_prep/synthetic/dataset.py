"""The embedded default dataset: procedural, multi-class, deliberately non-aligned 3D objects.

Writes WebDataset shards + ``manifest.json`` in the format of ``data_prep/common.py``. Every
shard is a pure function of (seed, shard index, shard size, resolution), so the output does not
depend on ``--workers``; it is bit-identical across runs with the same torch build and thread
count (transcendental kernels may differ in the last ulp across thread counts or machines).

    python -m data_prep.synthetic --out data/synthetic64 --num-samples 4000 --resolution 64

Shards are rendered into a hidden staging folder inside ``--out`` and moved into place only when
all of them are complete; the manifest is written last. An interrupted run removes its staging
folder (or, if killed outright, leaves only a hidden folder that readers never look at and a
later run deletes), so no partial dataset can be read.
"""

import argparse
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_prep import common
from data_prep.synthetic.depth import simulate_monocular_depth
from data_prep.synthetic.novel_views import render_novel_views
from data_prep.synthetic.scenes import FAR, NEAR, render, sample_cameras, sample_scenes
from data_prep.synthetic.shapes import CLASS_NAMES
from gp3d.types import CAMERA_FIELDS

GENERATOR_NAME = "data_prep.synthetic.dataset"
GENERATOR_VERSION = "1.0"
KEYS = ["png", "depth.png", "cls", "depth_gt.npy", "camera.json"]
# With novel_views = K > 0 (held-out benchmark splits): K more renders of the sample's scene from
# other true cameras (data_prep/synthetic/novel_views.py).
NOVEL_KEYS = ["novel_rgb.npy", "novel_depth_gt.npy", "novel_cameras.json"]
DEFAULT_NUM_SAMPLES, DEFAULT_RESOLUTION, DEFAULT_SHARD_SIZE = 4000, 64, 500
_RAYS_PER_CHUNK = 1 << 20  # bounds render memory (~100 MB of temporaries) at any resolution
_STAGING_RE = re.compile(r"^\.staging-(\d+)-[0-9a-f]+$")
_SHARD_RE = re.compile(r"^shard-\d{6}\.tar$")


def _shard_seed(seed: int, shard_index: int) -> int:
    return int(np.random.SeedSequence([seed, shard_index]).generate_state(1, np.uint64)[0] >> 1)


def render_shard_samples(
    seed: int,
    shard_index: int,
    start: int,
    count: int,
    resolution: int,
    novel_views: int = 0,
    novel_max_yaw: float = 45.0,
) -> list[dict[str, Any]]:
    """Render and encode the ``count`` samples of one shard (keys ``start .. start+count-1``),
    each with ``novel_views`` extra views (``NOVEL_KEYS``; their own random stream, so the base
    keys are the same with or without them)."""
    g = torch.Generator().manual_seed(_shard_seed(seed, shard_index))
    labels = torch.randint(0, len(CLASS_NAMES), (count,), generator=g)
    scenes, cams = sample_scenes(g, labels), sample_cameras(g, count)
    chunk = max(1, _RAYS_PER_CHUNK // resolution**2)
    samples = []
    for lo in range(0, count, chunk):
        sl = slice(lo, min(lo + chunk, count))
        rgb, depth = render(scenes[sl], cams[sl], resolution)
        estimate = simulate_monocular_depth(depth, g, NEAR, FAR)
        rgb8 = (rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for j in range(rgb8.shape[0]):
            i = lo + j
            samples.append(
                {
                    "__key__": f"{start + i:08d}",
                    "png": common.encode_png(rgb8[j]),
                    "depth.png": common.encode_relative_depth(estimate[j, 0].numpy()),
                    "cls": str(int(labels[i])),
                    "depth_gt.npy": common.encode_npy(depth[j, 0].numpy().astype(np.float16)),
                    "camera.json": common.encode_json(
                        {k: float(getattr(cams, k)[i]) for k in CAMERA_FIELDS}
                    ),
                }
            )
    if novel_views > 0:
        _add_novel_views(
            samples, scenes, cams, novel_views, seed, shard_index, resolution, novel_max_yaw
        )
    return samples


def _add_novel_views(samples, scenes, cams, k, seed, shard_index, resolution, max_yaw) -> None:
    rgb8, depth, novel = render_novel_views(
        scenes, cams, k, _shard_seed(seed, shard_index), resolution, max_yaw
    )
    for i, sample in enumerate(samples):
        views = novel[i * k : (i + 1) * k]
        sample["novel_rgb.npy"] = common.encode_npy(rgb8[i])
        sample["novel_depth_gt.npy"] = common.encode_npy(depth[i])
        sample["novel_cameras.json"] = common.encode_json(
            [{f: float(getattr(views, f)[j]) for f in CAMERA_FIELDS} for j in range(k)]
        )


def _write_shard(spec: tuple) -> tuple[dict[str, Any], list[int]]:
    folder, seed, shard_index, start, count, resolution, novel_views, novel_max_yaw = spec
    samples = render_shard_samples(
        seed, shard_index, start, count, resolution, novel_views, novel_max_yaw
    )
    with common.AtomicShardWriter(folder / common.SHARD_PATTERN.format(shard_index)) as writer:
        for sample in samples:
            writer.write(sample)
    return writer.shard_info, [int(s["cls"]) for s in samples]


def _worker_init() -> None:
    torch.set_num_threads(1)  # one process per core beats intra-op threads for tiny images


def _params(
    num_samples: int, resolution: int, seed: int, shard_size: int, novel_views: int = 0,
    novel_max_yaw: float = 45.0,
) -> dict[str, Any]:  # fmt: skip
    params: dict[str, Any] = {
        "num_samples": num_samples, "resolution": resolution, "seed": seed,
        "shard_size": shard_size,
    }  # fmt: skip
    if novel_views > 0:  # absent otherwise: datasets without novel views keep their manifests
        params.update(novel_views=novel_views, novel_max_yaw=float(novel_max_yaw))
    return params


def _visible_entries(out: Path) -> list[Path]:
    """Entries that make ``out`` non-empty: everything but temp files and staging folders."""
    return [p for p in out.iterdir() if not (_STAGING_RE.match(p.name) or ".tmp-" in p.name)]


def _remove_stale_staging(out: Path) -> None:
    for p in out.iterdir():
        m = _STAGING_RE.match(p.name)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _existing_matches(out: Path, params: dict[str, int]) -> bool:
    try:
        manifest = common.read_manifest(out, verify_checksums=True)
    except common.DatasetError:
        return False
    gen = manifest["generator"]
    return (gen.get("name"), gen.get("version"), gen.get("params")) == (
        GENERATOR_NAME, GENERATOR_VERSION, params,
    )  # fmt: skip


def generate_dataset(
    out: str | os.PathLike,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    resolution: int = DEFAULT_RESOLUTION,
    seed: int = 0,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 1,
    overwrite: bool = False,
    on_shard: Callable[[int, int], None] | None = None,
    novel_views: int = 0,
    novel_max_yaw: float = 45.0,
) -> bool:
    """Write the synthetic dataset to ``out``; returns False if an identical one was reused.

    Raises ``FileExistsError`` if ``out`` holds anything else and ``overwrite`` is False.
    ``on_shard(done, total)`` is called after each finished shard (progress; tests use it to
    interrupt the run). ``novel_views``: extra true views per sample (held-out benchmark splits;
    see ``novel_views.py``), their yaw within ``novel_max_yaw`` degrees of the sample's.
    """
    if num_samples < 1 or resolution < 2 or shard_size < 1 or workers < 1 or novel_views < 0:
        raise ValueError(
            "num_samples, shard_size and workers must be >= 1, resolution >= 2, novel_views >= 0"
        )
    out = Path(out)
    params = _params(num_samples, resolution, seed, shard_size, novel_views, novel_max_yaw)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    if _visible_entries(out):
        if not overwrite and _existing_matches(out, params):
            return False
        if not overwrite:
            raise FileExistsError(
                f"{out} is not empty and does not hold a synthetic dataset with parameters "
                f"{params}. Pass --overwrite (overwrite=True) to replace it, or choose another --out."
            )
    staging = out / f".staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        starts = range(0, num_samples, shard_size)
        specs = [
            (
                staging,
                seed,
                k,
                s,
                min(shard_size, num_samples - s),
                resolution,
                novel_views,
                novel_max_yaw,
            )
            for k, s in enumerate(starts)
        ]
        results = []
        if workers == 1:
            for spec in specs:
                results.append(_write_shard(spec))
                if on_shard:
                    on_shard(len(results), len(specs))
        else:
            ctx = multiprocessing.get_context("spawn")  # fork after torch threads can deadlock
            with ctx.Pool(min(workers, len(specs)), initializer=_worker_init) as pool:
                for res in pool.imap(_write_shard, specs):
                    results.append(res)
                    if on_shard:
                        on_shard(len(results), len(specs))
        _publish(out, staging, params, [r[0] for r in results], [c for r in results for c in r[1]])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _publish(out: Path, staging: Path, params: dict[str, Any], shards: list, labels: list) -> None:
    """Replace whatever ``out`` held by the staged shards; the manifest goes last."""
    (out / common.MANIFEST_NAME).unlink(missing_ok=True)  # the old dataset is invalid from here
    for p in out.iterdir():
        if _SHARD_RE.match(p.name):
            p.unlink()
    for shard in shards:
        os.replace(staging / shard["name"], out / shard["name"])
    manifest = {
        "format": {"name": common.FORMAT_NAME, "version": common.FORMAT_VERSION},
        "generator": {"name": GENERATOR_NAME, "version": GENERATOR_VERSION, "params": params},
        "seed": params["seed"],
        "num_samples": params["num_samples"],
        "resolution": params["resolution"],
        "num_classes": len(CLASS_NAMES),
        "class_names": list(CLASS_NAMES),
        "class_counts": np.bincount(labels, minlength=len(CLASS_NAMES)).tolist(),
        "keys": KEYS + (NOVEL_KEYS if params.get("novel_views") else []),
        "shards": shards,
        "depth": common.DEPTH_DESCRIPTION,
        "embedding_dim": None,
        "camera": {"near": NEAR, "far": FAR, "fields": list(CAMERA_FIELDS)},
    }
    common.write_manifest(out, manifest)


def ensure_synthetic_dataset(
    path: str | os.PathLike,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    resolution: int = DEFAULT_RESOLUTION,
    seed: int = 0,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 1,
    teacher: Mapping[str, Any] | None = None,
    novel_views: int = 0,
    novel_max_yaw: float = 45.0,
) -> Path:
    """Make sure ``path`` holds this synthetic dataset (generate it once, then reuse it).

    For the training entry point; call it on one process only (e.g. ``prepare_data``).
    Raises ``FileExistsError`` if ``path`` holds something else. ``teacher``: keyword arguments
    of ``data_prep.extract_features.ensure_teacher_features`` (e.g. ``{"model_name": "resnet50",
    "weights": "random", "input_size": 64}``) to also add teacher features in place (spec 6.5).
    ``novel_views`` / ``novel_max_yaw``: see :func:`generate_dataset` (held-out benchmark splits).
    """
    if teacher is not None:
        from data_prep.extract_features import complete_interrupted_update

        complete_interrupted_update(path)  # a cut-short feature swap must not block the reuse
    generate_dataset(
        path, num_samples, resolution, seed, shard_size, workers, overwrite=False,
        novel_views=novel_views, novel_max_yaw=novel_max_yaw,
    )  # fmt: skip
    if teacher is not None:
        from data_prep.extract_features import ensure_teacher_features

        ensure_teacher_features(path, None, **teacher)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.synthetic",
        description="Generate the embedded synthetic 3D dataset (WebDataset shards + manifest). "
        "Re-running with identical parameters reuses the existing dataset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--num-samples", type=int, default=DEFAULT_NUM_SAMPLES, help="images")
    parser.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, help="pixels")
    parser.add_argument("--seed", type=int, default=0, help="the dataset is a function of it")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="per tar")
    parser.add_argument("--workers", type=int, default=1, help="processes (same output)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument(
        "--novel-views", type=int, default=0, help="extra true views per sample (benchmarks)"
    )
    parser.add_argument(
        "--novel-max-yaw", type=float, default=45.0, help="novel views' yaw offset, degrees"
    )
    teacher = parser.add_argument_group("teacher features (emb.npy, spec 6.5), optional")
    teacher.add_argument("--teacher", metavar="MODEL", help="timm model name, e.g. resnet50")
    weights = teacher.add_mutually_exclusive_group()
    weights.add_argument("--teacher-weights", metavar="PATH", help="local weights file")
    weights.add_argument("--teacher-pretrained", action="store_const", const="pretrained")
    weights.add_argument("--teacher-random-init", action="store_const", const="random")
    teacher.add_argument("--teacher-input-size", type=int, help="teacher input side")
    args = parser.parse_args(argv)
    t_weights = args.teacher_weights or args.teacher_pretrained or args.teacher_random_init
    if args.teacher and t_weights is None:
        parser.error("--teacher needs --teacher-weights/--teacher-pretrained/--teacher-random-init")
    t0 = time.perf_counter()
    total = math.ceil(args.num_samples / args.shard_size)

    def progress(done: int, _: int) -> None:
        print(f"\rshards {done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        written = generate_dataset(
            args.out, args.num_samples, args.resolution, args.seed, args.shard_size,
            args.workers, args.overwrite, on_shard=progress, novel_views=args.novel_views,
            novel_max_yaw=args.novel_max_yaw,
        )  # fmt: skip
        if args.teacher:
            from data_prep.extract_features import ensure_teacher_features

            ensure_teacher_features(
                args.out, None, args.teacher, t_weights, args.teacher_input_size
            )
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not written:
        print(f"{args.out} already holds this dataset (identical parameters): reusing it.")
    else:
        dt = time.perf_counter() - t0
        print(f"\nwrote {args.num_samples} samples in {total} shards to {args.out} in {dt:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
