"""Depth maps for an image folder: import precomputed ones or run a monocular estimator (spec 9).

    # the original releases / a LeReS dump: validate, convert and copy into a depth tree
    python -m data_prep.estimate_depth /data/dogs --out data/dogs_depth --import-from /data/dogs
    # a transformers model from the hub or a local folder (GPU when present, batched)
    python -m data_prep.estimate_depth /data/imagenet --out data/imagenet_depth \\
        --model depth-anything/Depth-Anything-V2-Small-hf --batch-size 32 --workers 8
    # LeReS ResNeXt-101, the original 3DGP's estimator (res101.pth: hub download or local file)
    python -m data_prep.estimate_depth /data/imagenet --out data/imagenet_depth \\
        --model leres --depth-weights /models/res101.pth

Output: ``<out>/<class folder>/<stem>_depth.png`` mirroring the image tree (what
``write_shards --depth-dir`` reads), 16-bit, **relative depth, larger = farther, scaled so each
map's maximum is 60000** (spec 5.1; training reads ``raw / 65536 * 2 - 1``), at the image's own
size. Depth-Anything (relative) and DPT/MiDaS predict *disparity* (larger = nearer): it is
inverted with the clipped ``1 / d`` of ``data_prep/depth/convert.py`` (``--max-ratio``); metric
models (``*-Metric-*``, ZoeDepth) and LeReS (``data_prep/depth/leres.py``) predict depth and need
no inversion. ``<out>/depth_info.json`` records the estimator and conventions (copied into the
shard manifest by ``write_shards``); ``<out>/depth_skipped.txt`` lists images without a map and why.

Resumable: a map is written to a temp file and renamed, so an existing map is complete and a
re-run skips it. The parameters are kept in ``<out>/.estimate-depth.json``; a re-run with other
parameters is refused (``--overwrite`` deletes the old maps). One process per output folder.

Parts: ``depth_output`` (resume state, info and skip files), ``depth_import`` (importing, its
process pool), ``depth_inference`` (running a model), ``depth_model``, ``depth_convert``.
"""

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep import common
from data_prep.depth.convert import (
    DEFAULT_MAX_RATIO,
    DEPTH,
    PREDICTION_KINDS,
    default_max_ratio,
    max_ratio_record,
)
from data_prep.depth.importer import ImportSettings, run_import
from data_prep.depth.inference import run_model
from data_prep.depth.leres import add_leres_arguments
from data_prep.depth.model import DepthModel
from data_prep.depth.output import (  # noqa: F401 - re-exported (make_shards, tests)
    INFO_FORMAT,
    INFO_NAME,
    SKIPPED_NAME,
    STATE_NAME,
    finish_depth_out,
    model_params,
    prepare_depth_out,
)
from data_prep.folder_source import depth_relpath
from data_prep.shards.assignment import select_records
from data_prep.sources import scan_source


@dataclass
class DepthResult:
    """What a run did: maps written now, reused from an earlier run, and skips per reason."""

    path: Path
    written: int = 0
    reused: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else float("nan")


# ------------------------------------------------------------------------------------------------
# Entry point


def estimate_depth(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str | None = None,
    import_from: str | os.PathLike | None = None,
    kind: str = DEPTH,
    renormalise: bool = False,
    prediction: str = "auto",
    max_ratio: float | None = None,
    select: str | os.PathLike | None = None,
    class_map: str | os.PathLike | None = None,
    train_subdir: bool = True,
    batch_size: int = 16,
    workers: int = 0,
    device: str | None = None,
    dtype: str = "float32",
    seed: int = 0,
    depth_weights: str | None = None,
    input_size: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> DepthResult:
    """Write the depth maps of ``src``'s images into ``out`` (see the module docstring).

    Exactly one of ``model`` (hub id, folder or ``random:<preset>``) and ``import_from`` (a
    folder of precomputed maps; may be ``src`` itself) is given. ``kind``: what imported maps
    hold (``depth`` or ``disparity``); ``prediction``: what the model predicts (``auto`` from its
    config). ``max_ratio``: None = :func:`default_max_ratio` (no floor for LeReS, else 10).
    ``depth_weights`` / ``input_size``: LeReS's ``res101.pth`` and input side (``model="leres"``).
    ``on_progress(done, total)`` is called after each chunk (tests interrupt with it).
    """
    if (model is None) == (import_from is None):
        raise ValueError("give exactly one of --model and --import-from")
    max_ratio = default_max_ratio(model) if max_ratio is None else max_ratio
    if kind not in PREDICTION_KINDS or batch_size < 1 or workers < 0 or max_ratio <= 1:
        raise ValueError("need kind depth|disparity, batch_size >= 1, workers >= 0, max_ratio > 1")
    t0 = time.perf_counter()
    index = scan_source(src, class_map, train_subdir, label_key="none")  # tars: every image
    records, not_found = select_records(index, select)
    out = Path(out)
    if import_from is not None:
        depth_src = Path(import_from)
        if not depth_src.is_dir():
            raise common.DatasetNotFoundError(f"depth folder {depth_src} does not exist")
        depth_src = index.root if depth_src.resolve() == Path(src).resolve() else depth_src
        params = {"method": "import", "depth_src": str(depth_src.resolve()), "kind": kind,
                  "renormalise": renormalise, "max_ratio": max_ratio_record(max_ratio)}  # fmt: skip
    else:
        estimator = DepthModel(model, prediction, seed, dtype, depth_weights, input_size)
        estimator.fetch_weights()
        params = model_params(estimator, prediction, max_ratio)
    prepare_depth_out(out, index.root, params, overwrite)
    todo = [r.relpath for r in records if not (out / depth_relpath(r.relpath)).is_file()]
    result = DepthResult(out, reused=len(records) - len(todo))
    if import_from is not None:
        settings = ImportSettings(str(index.root), str(depth_src), str(out), kind, renormalise,
                                  max_ratio)  # fmt: skip
        stream = run_import(settings, todo, workers)
        info: dict[str, Any] = {"estimator": {**params, "description": (
            "precomputed maps; depth kept as stored" if kind == DEPTH and not renormalise
            else "precomputed maps; rescaled to max 60000" if kind == DEPTH
            else "precomputed disparity inverted (data_prep/depth/convert.py)")}}  # fmt: skip
    else:
        estimator.load(device)  # even with nothing to do: the record needs its config
        stream = run_model(estimator, index.root, out, todo, batch_size, workers, max_ratio)
        info = {"estimator": {**estimator.record(), "max_ratio": max_ratio_record(max_ratio)}}
    skips: list[tuple[str, str, str]] = []
    bar = tqdm(total=len(todo), unit="img", disable=not progress, desc="estimate_depth")
    with bar, contextlib.closing(stream) as chunks:
        for n, chunk_skips in chunks:
            skips += chunk_skips
            result.written += n - len(chunk_skips)
            bar.update(n)
            if on_progress:
                on_progress(bar.n, len(todo))
    skips += [(rel, reason, "") for rel, reason in not_found]
    info["source"] = {"root": str(index.root.resolve()), "selection": select and str(select)}
    num_maps = result.written + result.reused
    result.skipped = finish_depth_out(out, info, len(records), num_maps, skips)
    result.seconds = time.perf_counter() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.estimate_depth",
        description="Depth maps (16-bit <stem>_depth.png, relative depth, larger = farther, max "
        "60000) for an image folder: import precomputed maps or run a transformers monocular "
        "depth model. Resumable: re-run the same command after an interruption.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("src", help="image folder: class folders (train/ used if present) or flat")
    parser.add_argument("--out", required=True, help="depth folder (mirrors SRC's tree)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--model", help="hub id (e.g. depth-anything/Depth-Anything-V2-Small-hf), "
                     "local model folder, leres (the original's LeReS ResNeXt-101), or "
                     "random:<depth-anything-tiny|dpt-tiny|leres> (tests)")  # fmt: skip
    how.add_argument("--import-from", metavar="DIR", help="folder of precomputed maps "
                     "(<stem>_depth.png, <stem>._depth.png or LeReS <stem>.png); SRC = beside")  # fmt: skip
    parser.add_argument("--kind", choices=PREDICTION_KINDS, default=DEPTH,
                        help="what imported maps hold (disparity: larger = nearer)")  # fmt: skip
    parser.add_argument("--renormalise", action="store_true",
                        help="rescale imported depth maps to a per-image max of 60000")  # fmt: skip
    parser.add_argument("--prediction", choices=("auto", *PREDICTION_KINDS), default="auto",
                        help="what the model predicts (auto: from its config)")  # fmt: skip
    parser.add_argument("--max-ratio", type=float,
                        help=f"far/near range kept (default {DEFAULT_MAX_RATIO:g}; LeReS: inf, "
                        "the whole range as its release)")  # fmt: skip
    add_leres_arguments(parser)
    parser.add_argument("--select", help="only the relative paths listed in this file")
    parser.add_argument("--class-map", help="class mapping file (as write_shards)")
    parser.add_argument("--no-train-subdir", action="store_true", help="ignore SRC/train/")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes decoding images / importing maps (0 = this one)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto = cuda if available, else cpu")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="model precision (half types need CUDA)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of random: models")
    parser.add_argument("--overwrite", action="store_true", help="replace maps of other params")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        res = estimate_depth(
            args.src, args.out, model=args.model, import_from=args.import_from, kind=args.kind,
            renormalise=args.renormalise, prediction=args.prediction, max_ratio=args.max_ratio,
            select=args.select, class_map=args.class_map, train_subdir=not args.no_train_subdir,
            batch_size=args.batch_size, workers=args.workers, device=args.device,
            dtype=args.dtype, seed=args.seed, depth_weights=args.depth_weights,
            input_size=args.input_size, overwrite=args.overwrite, progress=not args.quiet,
        )  # fmt: skip
    except (common.DatasetError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"{res.path}: {res.written} maps written, {res.reused} reused, in {res.seconds:.1f} s "
        f"({res.images_per_second:.1f} maps/s); skipped {res.skipped or 'none'} "
        f"(see {SKIPPED_NAME})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
