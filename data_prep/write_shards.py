"""Pack an image folder (+ depth maps) into gp3d WebDataset shards with a manifest (spec 9).

    python -m data_prep.write_shards /data/imagenet --out data/imagenet_256 --resolution 256 \\
        --depth-dir data/imagenet_depth --workers 32

Source: an ImageNet-style tree of class folders (``train/`` used when present; labels = sorted
folder names or ``--class-map``) or a flat folder (one class), see ``data_prep/folder_source.py``;
or a folder of WebDataset / img2dataset tars, read in place (labels from ``--label-key``), see
``data_prep/tar_source.py``.
Depth maps mirror the source tree under ``--depth-dir`` (default: beside the images, as in the
original releases): ``<stem>_depth.png`` or ``<stem>._depth.png``, 16-bit, relative depth
(larger = farther) scaled to a per-image maximum of 60000 (spec 5.1), at the image's own size.

Each image and its depth map are centre-cropped to a square and Lanczos-resized to
``--resolution`` (spec 9 step 4). Samples (format: ``data_prep/common.py``) hold ``png`` (or
``jpg``), ``depth.png``, ``cls`` and ``meta.json`` (source path, original size); keys are the
sample's position in the shuffled order (8+ digits). Teacher features are a separate step
(``python -m data_prep.extract_features DEST``).

Assignment is deterministic: the records, sorted by relative path, are permuted with
``numpy.random.default_rng(seed)`` (so every shard mixes classes) and shard ``i`` holds
positions ``[i * shard_size, (i + 1) * shard_size)``. Output bytes do not depend on
``--workers``. Unusable files are skipped and counted per reason (manifest ``skipped`` and
``skipped.txt``); a shard whose images were all skipped is left out (shard names may have gaps).

Resuming: finished shards are recorded in the hidden ``<out>/.write-shards/`` folder with the
run's parameters (including the estimator in the depth folder's ``depth_info.json``, so maps
re-made by another estimator count as a change); a re-run with the same parameters verifies
(size, sha256) and reuses them, different parameters are an error unless ``--overwrite``. The
manifest is written last, so an interrupted run never looks complete. One process per output folder.

Many machines: ``--parts N --part I`` writes part I of N into the same ``--out`` (shared
file system; ``data_prep/shards/parts.py``) and ``python -m data_prep.merge_parts DEST`` writes
the manifest once all have finished; the result is byte-identical to a single run.

Parts: ``shard_assignment`` (selection, assignment), ``shard_output`` (reuse / resume /
overwrite), ``shard_jobs`` (process pool), ``shard_worker`` (one shard), ``shard_manifest``.
"""

import argparse
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep import common
from data_prep.shards import parts as shard_parts
from data_prep.shards.assignment import (  # noqa: F401 - re-exported (estimate_depth, tests)
    NOT_SELECTED_FOUND,
    assign,
    records_fingerprint,
    select_records,
)
from data_prep.shards.jobs import run_jobs
from data_prep.shards.manifest import (  # noqa: F401 - re-exported
    GENERATOR_NAME,
    GENERATOR_VERSION,
    IMAGE_DESCRIPTION,
    SKIPPED_NAME,
    build_manifest,
    depth_info,
)
from data_prep.shards.output import (  # noqa: F401 - re-exported
    STATE_NAME,
    finish_dataset,
    finished_params,
    prepare_output,
    prepare_part_output,
    write_skipped,
)
from data_prep.shards.worker import DEFAULT_PNG_LEVEL, EncodeSettings, shard_name
from data_prep.sources import scan_source
from data_prep.tar_source import is_tar_folder

DEFAULT_SHARD_SIZE = 1000  # ~200 MB per shard at 256 px PNG (see data_prep/bench/__main__.py)


@dataclass
class WriteResult:
    """What a run did; ``reused`` is True when a finished identical dataset was found."""

    path: Path
    num_samples: int = 0
    shards_written: int = 0
    shards_reused: int = 0
    images_processed: int = 0  # images read by this run (excludes reused shards)
    seconds: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)
    reused: bool = False

    @property
    def images_per_second(self) -> float:
        return self.images_processed / self.seconds if self.seconds > 0 else float("nan")


def _selection_summary(select: str | os.PathLike) -> dict[str, Any] | None:
    """How ``select_instances`` chose the images (its ``<selection>.json``: feature network,
    keep rule, images it could not read), so the manifest records how the dataset was subset."""
    path = Path(f"{select}.json")
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a hand-written selection file has no summary
    return (
        {k: v for k, v in summary.items() if k != "classes"} if isinstance(summary, dict) else None
    )


def write_shards(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    resolution: int = 256,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 0,
    depth_dir: str | os.PathLike | None = None,
    select: str | os.PathLike | None = None,
    class_map: str | os.PathLike | None = None,
    train_subdir: bool = True,
    seed: int = 0,
    min_size: int | None = None,
    image_format: str = "png",
    write_meta: bool = True,
    png_level: int = DEFAULT_PNG_LEVEL,
    overwrite: bool = False,
    progress: bool = False,
    on_shard: Callable[[int, int], None] | None = None,
    parts: int | None = None,
    part: int | None = None,
    label_key: str = "cls",
) -> WriteResult:
    """Write the shards of ``src`` into ``out`` (see the module docstring).

    ``min_size``: images whose short side is below it are skipped (default ``resolution // 4``:
    more than 4x upsampling only adds blur). ``on_shard(done, total)`` is called after each
    shard (tests use it to interrupt a run). Raises ``DatasetNotFoundError`` for a missing or
    empty source, ``FileExistsError`` when ``out`` holds something else and ``overwrite`` is
    False, ``DatasetFormatError`` when every image was skipped.

    ``label_key``: where a tar source's labels come from (``data_prep/tar_source.py``).
    ``parts``/``part``: write only part ``part`` of ``parts`` (``shards/parts.py``); no manifest
    (``python -m data_prep.merge_parts`` writes it once every part has finished).
    """
    if resolution < 2 or shard_size < 1 or workers < 0 or image_format not in ("png", "jpg"):
        raise ValueError("need resolution >= 2, shard_size >= 1, workers >= 0, format png|jpg")
    if (parts is None) != (part is None):
        raise ValueError("--parts N and --part I go together (part I of N, I = 0 .. N-1)")
    if parts is not None and part is not None:
        shard_parts.part_shards(0, parts, part)  # checks the range before any work
    t0 = time.perf_counter()
    min_size = resolution // 4 if min_size is None else min_size
    index = scan_source(src, class_map, train_subdir, label_key)
    is_tars = is_tar_folder(src)
    records, not_found = select_records(index, select)
    if not records:
        raise common.DatasetNotFoundError(
            f"no images of {index.root} to write" + (f" are listed in {select}" if select else "")
        )
    depth_root = Path(depth_dir) if depth_dir is not None else index.root
    if not depth_root.is_dir():
        raise common.DatasetNotFoundError(
            f"depth folder {depth_root} does not exist: run `python -m data_prep.estimate_depth` "
            "first, or point --depth-dir at the depth maps (<stem>_depth.png)"
        )
    out = Path(out)
    params = {
        "source": str(index.root.resolve()),
        "depth_dir": str(depth_root.resolve()),
        # how estimate_depth made the maps: maps re-made into the same folder by another
        # estimator must not reuse old shards (counts left out: retried failures may succeed)
        "depth_estimator": (depth_info(depth_root) or {}).get("estimator"),
        "class_map": str(Path(class_map).resolve()) if class_map else None,
        "records_sha256": records_fingerprint(records),
        "num_records": len(records),
        "resolution": resolution,
        "shard_size": shard_size,
        "seed": seed,
        "min_size": min_size,
        "image_format": image_format,
        "write_meta": write_meta,
        "png_level": png_level,
        **({"label_key": label_key} if is_tars else {}),  # folders: key absent (old runs reuse)
    }
    if out.is_dir() and not overwrite and finished_params(out) == params:
        manifest = common.read_manifest(out)
        return WriteResult(out, manifest["num_samples"], shards_reused=len(manifest["shards"]),
                           skipped=manifest["skipped"], reused=True)  # fmt: skip
    index_rows = [(s[0], s[1], s[2] if len(s) > 2 else "") for s in index.skipped]
    index_rows += [(rel, reason, "") for rel, reason in not_found]
    extra = {
        "source": {
            "path": str(Path(src).resolve()),
            "root": str(index.root.resolve()),
            "layout": "tars" if is_tars else "class folders" if index.class_folders != [""]
            else "flat folder",
            "class_map": params["class_map"],
            "images_indexed": len(index.records),
            "selection": None if select is None else {
                "file": str(Path(select).resolve()), "listed": len(records) + len(not_found),
                "kept": len(records), "summary": _selection_summary(select),
            },
            "depth_dir": params["depth_dir"],
        },
    }  # fmt: skip
    jobs = assign(records, shard_size, seed)
    if parts is None:
        prepare_output(out, params, overwrite)
    else:
        if overwrite:
            raise ValueError("--overwrite cannot be combined with --parts (parts never delete "
                             "each other's files): delete the output folder instead")  # fmt: skip
        header = {
            "parts": parts, "params": params, "num_shards": len(jobs),
            "class_names": list(index.class_names), "class_folders": list(index.class_folders),
            "index_skipped": [list(r) for r in index_rows], "extra": extra,
        }  # fmt: skip
        jobs = [jobs[i] for i in shard_parts.part_shards(len(jobs), parts, part)]
        prepare_part_output(out, header, [shard_name(j.index) for j in jobs])
    settings = EncodeSettings(
        str(index.root), str(depth_root), str(out), resolution, min_size, image_format, write_meta,
        png_level,
    )  # fmt: skip
    result, done = WriteResult(out), []
    sizes = {j.index: len(j.items) for j in jobs}
    bar = tqdm(total=sum(sizes.values()), unit="img", disable=not progress, desc="write_shards")
    # closing(): an exception here (Ctrl-C, on_shard) stops the worker pool at once
    with bar, contextlib.closing(run_jobs(settings, jobs, workers)) as stream:
        for record in stream:
            done.append(record)
            n_items = sizes[record["index"]]
            if record["reused"]:
                result.shards_reused += 1
            else:
                result.shards_written += 1
                result.images_processed += n_items
            bar.update(n_items)
            if on_shard:
                on_shard(len(done), len(jobs))
    if parts is not None:
        finished = [{k: v for k, v in r.items() if k != "reused"} for r in done]
        shard_parts.write_done(out, parts, part, {**header, "part": part, "records": finished})
        result.num_samples = sum(r["num_samples"] for r in done)
        result.skipped = dict(Counter(s[1] for r in done for s in r["skipped"]))
        result.seconds = time.perf_counter() - t0
        return result
    manifest = finish_dataset(out, index, params, done, index_rows, extra)
    result.num_samples, result.skipped = manifest["num_samples"], manifest["skipped"]
    result.seconds = time.perf_counter() - t0
    return result


# ------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.write_shards",
        description="Resize and centre-crop an image folder (+ depth maps) into gp3d WebDataset "
        "shards with a manifest. Resumable: re-run the same command after an interruption.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("src", help="image folder: class folders (ImageNet; train/ used if "
                        "present), a flat folder (one class), or a folder of WebDataset tars "
                        "(see --label-key)")  # fmt: skip
    parser.add_argument("--out", required=True, help="output shard folder")
    parser.add_argument("--resolution", type=int, default=256, help="output side in pixels")
    parser.add_argument("--depth-dir", help="depth root mirroring SRC (<stem>_depth.png); "
                        "default: beside the images")  # fmt: skip
    parser.add_argument("--select", help="keep only the relative paths listed in this file "
                        "(from data_prep.select_instances)")  # fmt: skip
    parser.add_argument("--class-map", help="JSON {folder: index} or text '<folder> <name>' "
                        "per line in label order; default: sorted folder names")  # fmt: skip
    parser.add_argument("--no-train-subdir", action="store_true",
                        help="index SRC itself even if it holds a train/ folder")  # fmt: skip
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="images/tar")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes writing shards (0 = in this process)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the shard assignment")
    parser.add_argument("--min-size", type=int, help="skip images whose short side is smaller "
                        "(default: resolution / 4)")  # fmt: skip
    parser.add_argument("--format", dest="image_format", choices=["png", "jpg"], default="png",
                        help="image encoding in the shards (jpg: quality 95)")  # fmt: skip
    parser.add_argument("--png-level", type=int, default=DEFAULT_PNG_LEVEL, choices=range(10),
                        metavar="0-9", help="zlib level of the PNGs (1: fast, ~3%% larger)")  # fmt: skip
    parser.add_argument("--no-meta", action="store_true", help="omit per-sample meta.json")
    parser.add_argument("--overwrite", action="store_true", help="replace a different --out")
    parser.add_argument("--label-key", default="cls", help="tar sources: label from the 'cls' "
                        "member, 'json:<field>', 'txt' or 'none' (one class)")  # fmt: skip
    parser.add_argument("--parts", type=int, help="split the work into N parts (one per machine, "
                        "same --out); then run data_prep.merge_parts")  # fmt: skip
    parser.add_argument("--part", type=int, help="which part this run writes (0 .. N-1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        res = write_shards(
            args.src, args.out, resolution=args.resolution, shard_size=args.shard_size,
            workers=args.workers, depth_dir=args.depth_dir, select=args.select,
            class_map=args.class_map, train_subdir=not args.no_train_subdir, seed=args.seed,
            min_size=args.min_size, image_format=args.image_format, write_meta=not args.no_meta,
            png_level=args.png_level, overwrite=args.overwrite, progress=not args.quiet,
            parts=args.parts, part=args.part, label_key=args.label_key,
        )  # fmt: skip
    except (common.DatasetError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if res.reused:
        print(f"{res.path} already holds these shards ({res.num_samples} images): reusing them.")
        return 0
    if args.parts is not None:
        print(
            f"{res.path}: part {args.part} of {args.parts} done: {res.num_samples} images in "
            f"{res.shards_written} new + {res.shards_reused} reused shards "
            f"({res.images_per_second:.1f} images/s); skipped {res.skipped or 'none'}. When "
            f"every part is done: python -m data_prep.merge_parts {res.path}"
        )
        return 0
    print(
        f"{res.path}: {res.num_samples} images in {res.shards_written} new + {res.shards_reused} "
        f"reused shards; {res.images_processed} images read in {res.seconds:.1f} s "
        f"({res.images_per_second:.1f} images/s); skipped {res.skipped or 'none'} "
        f"(see {SKIPPED_NAME})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
