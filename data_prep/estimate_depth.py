"""Depth maps for an image folder: import precomputed ones or run a monocular estimator (spec 9).

    # the original releases / a LeReS dump: validate, convert and copy into a depth tree
    python -m data_prep.estimate_depth /data/dogs --out data/dogs_depth --import-from /data/dogs
    # a transformers model from the hub or a local folder (GPU when present, batched)
    python -m data_prep.estimate_depth /data/imagenet --out data/imagenet_depth \\
        --model depth-anything/Depth-Anything-V2-Small-hf --batch-size 32 --workers 8

Output: ``<out>/<class folder>/<stem>_depth.png`` mirroring the image tree (what
``write_shards --depth-dir`` reads), 16-bit, **relative depth, larger = farther, scaled so each
map's maximum is 60000** (spec 5.1; training reads ``raw / 65536 * 2 - 1``), at the image's own
size. Depth-Anything (relative) and DPT/MiDaS predict *disparity* (larger = nearer): it is
inverted with the clipped ``1 / d`` of ``data_prep/depth_convert.py`` (``--max-ratio``); metric
models (``*-Metric-*``, ZoeDepth) predict depth and need no inversion. ``<out>/depth_info.json``
records the estimator and conventions (copied into the shard manifest by ``write_shards``);
``<out>/depth_skipped.txt`` lists images without a map and why.

Resumable: a map is written to a temp file and renamed, so an existing map is complete and a
re-run skips it. The parameters are kept in ``<out>/.estimate-depth.json``; a re-run with other
parameters is refused (``--overwrite`` deletes the old maps). One process per output folder.
"""

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from data_prep import common
from data_prep.depth_convert import DEFAULT_MAX_RATIO, DEPTH, PREDICTION_KINDS, prediction_to_depth
from data_prep.depth_import import (
    DEPTH_DEGENERATE,
    PNG_LEVEL,
    ImportSettings,
    import_chunk,
    write_atomic,
)
from data_prep.depth_model import DepthModel
from data_prep.folder_source import depth_relpath, scan_image_folder
from data_prep.images import ImageSkip, load_rgb
from data_prep.write_shards import select_records

INFO_NAME, SKIPPED_NAME, STATE_NAME = "depth_info.json", "depth_skipped.txt", ".estimate-depth.json"
INFO_FORMAT = {"name": "gp3d-depth-maps", "version": 1}
IMPORT_CHUNK = 64  # images per task of the import pool


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
# Output folder


def _prepare_out(out: Path, image_root: Path, params: dict[str, Any], overwrite: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() == image_root.resolve() or image_root.resolve() in out.resolve().parents:
        raise ValueError(f"--out {out} must not be inside the image folder {image_root}")
    state = out / STATE_NAME
    try:
        old = json.loads(state.read_text())
    except (OSError, json.JSONDecodeError):
        old = None
    maps = [p for p in out.rglob("*_depth.png")] if old != params else []
    if old != params and (old is not None or maps):
        if not overwrite:
            raise FileExistsError(
                f"{out} holds depth maps made with other parameters ({old}). Re-run with the "
                "same parameters to resume, pass --overwrite to delete them, or choose another "
                "--out."
            )
        for p in maps:
            p.unlink()
        for name in (INFO_NAME, SKIPPED_NAME):
            (out / name).unlink(missing_ok=True)
    for p in out.rglob("*.tmp-*"):  # temp files of a killed run
        p.unlink(missing_ok=True)
    (out / INFO_NAME).unlink(missing_ok=True)  # rewritten when this run finishes
    tmp = common.temp_path(state)
    tmp.write_text(json.dumps(params, sort_keys=True, indent=1))
    os.replace(tmp, state)


def _finish(
    out: Path,
    info: dict[str, Any],
    num_images: int,
    num_maps: int,
    skips: list[tuple[str, str, str]],
) -> dict[str, int]:
    counts = Counter(reason for _, reason, _ in skips)
    lines = "".join(f"{rel}\t{reason}\t{' '.join(d.split())}\n" for rel, reason, d in skips)
    write_atomic(out / SKIPPED_NAME, ("# relpath\treason\tdetail\n" + lines).encode())
    info = {
        "format": INFO_FORMAT,
        **info,
        "encoding": common.DEPTH_DESCRIPTION["encoding"],
        "normalisation": common.DEPTH_DESCRIPTION["normalisation"],
        "naming": "<image relpath without extension>_depth.png, at the image's size",
        "num_images": num_images,
        "num_maps": num_maps,
        "skipped": dict(sorted(counts.items())),
    }
    write_atomic(out / INFO_NAME, json.dumps(info, indent=2).encode())
    return dict(sorted(counts.items()))


# ------------------------------------------------------------------------------------------------
# Importing


def _run_import(settings: ImportSettings, todo: list[str], workers: int) -> Iterator[tuple]:
    """(number of images done, their skips) per chunk."""
    chunks = [todo[i : i + IMPORT_CHUNK] for i in range(0, len(todo), IMPORT_CHUNK)]
    if workers == 0 or len(chunks) < 2:
        for chunk in chunks:
            yield len(chunk), import_chunk((settings, chunk))
        return
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(chunks)))
    try:
        for chunk, skips in zip(
            chunks, pool.imap(import_chunk, [(settings, c) for c in chunks]), strict=True
        ):
            yield len(chunk), skips
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


# ------------------------------------------------------------------------------------------------
# Running a model


class _ImageInputs(Dataset):
    """Image files -> (index, model input, (H, W)) or (index, None, (reason, detail))."""

    def __init__(self, root: Path, relpaths: list[str], processor) -> None:
        self.root, self.relpaths, self.processor = root, relpaths, processor  # no model: workers

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, i: int):
        try:
            rgb = load_rgb(self.root / self.relpaths[i])
        except ImageSkip as skip:
            return i, None, (skip.reason, skip.detail)
        try:
            pixels = self.processor(images=Image.fromarray(rgb), return_tensors="pt")
            pixels = pixels["pixel_values"][0]
        except Exception as err:  # noqa: BLE001 - counted, never fatal
            return i, None, ("error", f"preprocessing: {type(err).__name__}: {err}")
        return i, pixels, rgb.shape[:2]


def _as_list(items):
    return items


def _write_map(out: Path, relpath: str, prediction, kind: str, max_ratio: float) -> tuple | None:
    try:
        depth = prediction_to_depth(prediction, kind, max_ratio)
    except ValueError as err:
        return relpath, DEPTH_DEGENERATE, str(err)
    write_atomic(out / depth_relpath(relpath), common.encode_relative_depth(depth, PNG_LEVEL))
    return None


def _predict(model: DepthModel, batch: list, todo: list[str]) -> tuple[list, list]:
    """Predictions of a batch; if the batch fails (e.g. out of memory), image by image, and an
    image that still fails is counted (``error``) instead of stopping the run."""
    try:
        return model.predict(torch.stack([b[1] for b in batch]), [b[2] for b in batch]), []
    except RuntimeError:
        pass
    preds, failed = [], []
    for b in batch:
        try:
            preds += model.predict(b[1][None], [b[2]])
        except RuntimeError as err:
            preds.append(None)
            failed.append((todo[b[0]], "error", f"depth model: {err}"))
    return preds, failed


def _run_model(
    model: DepthModel, root: Path, out: Path, todo: list[str], batch_size: int, workers: int,
    max_ratio: float,
) -> Iterator[tuple[int, list]]:  # fmt: skip
    """(number of images done, their skips) per chunk of ``4 * batch_size`` images.

    Inputs keep the processor's aspect-preserving sizes, so a chunk is grouped by input shape
    and each group runs in batches; PNG encoding + writing overlaps on a thread pool (PIL's
    encoder releases the GIL).
    """
    loader = DataLoader(
        _ImageInputs(root, todo, model.processor), batch_size=4 * batch_size, num_workers=workers,
        collate_fn=_as_list, pin_memory=model.device.type == "cuda",
    )  # fmt: skip
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as writers:
        for chunk in loader:
            skips = [(todo[i], *why) for i, px, why in chunk if px is None]
            groups: dict[tuple, list] = {}
            for item in chunk:
                if item[1] is not None:
                    groups.setdefault(tuple(item[1].shape), []).append(item)
            futures = []
            for items in groups.values():
                for s in range(0, len(items), batch_size):
                    batch = items[s : s + batch_size]
                    preds, failed = _predict(model, batch, todo)
                    skips += failed
                    futures += [
                        writers.submit(_write_map, out, todo[b[0]], p, model.prediction, max_ratio)
                        for b, p in zip(batch, preds, strict=True)
                        if p is not None
                    ]
            skips += [r for f in futures if (r := f.result()) is not None]
            yield len(chunk), skips


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
    max_ratio: float = DEFAULT_MAX_RATIO,
    select: str | os.PathLike | None = None,
    class_map: str | os.PathLike | None = None,
    train_subdir: bool = True,
    batch_size: int = 16,
    workers: int = 0,
    device: str | None = None,
    dtype: str = "float32",
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> DepthResult:
    """Write the depth maps of ``src``'s images into ``out`` (see the module docstring).

    Exactly one of ``model`` (hub id, folder or ``random:<preset>``) and ``import_from`` (a
    folder of precomputed maps; may be ``src`` itself) is given. ``kind``: what imported maps
    hold (``depth`` or ``disparity``); ``prediction``: what the model predicts (``auto`` from its
    config). ``on_progress(done, total)`` is called after each chunk (tests interrupt with it).
    """
    if (model is None) == (import_from is None):
        raise ValueError("give exactly one of --model and --import-from")
    if kind not in PREDICTION_KINDS or batch_size < 1 or workers < 0 or max_ratio <= 1:
        raise ValueError("need kind depth|disparity, batch_size >= 1, workers >= 0, max_ratio > 1")
    t0 = time.perf_counter()
    index = scan_image_folder(src, class_map, train_subdir)
    records, not_found = select_records(index, select)
    out = Path(out)
    if import_from is not None:
        depth_src = Path(import_from)
        if not depth_src.is_dir():
            raise common.DatasetNotFoundError(f"depth folder {depth_src} does not exist")
        depth_src = index.root if depth_src.resolve() == Path(src).resolve() else depth_src
        params = {"method": "import", "depth_src": str(depth_src.resolve()), "kind": kind,
                  "renormalise": renormalise, "max_ratio": max_ratio}  # fmt: skip
    else:
        estimator = DepthModel(model, prediction, seed, dtype)
        source = str(Path(model).resolve()) if Path(model).is_dir() else model
        params = {"method": "model", "source": source, "prediction": prediction,
                  "max_ratio": max_ratio, "seed": seed if estimator.is_random else None}  # fmt: skip
    _prepare_out(out, index.root, params, overwrite)
    todo = [r.relpath for r in records if not (out / depth_relpath(r.relpath)).is_file()]
    result = DepthResult(out, reused=len(records) - len(todo))
    if import_from is not None:
        settings = ImportSettings(str(index.root), str(depth_src), str(out), kind, renormalise,
                                  max_ratio)  # fmt: skip
        stream = _run_import(settings, todo, workers)
        info: dict[str, Any] = {"estimator": {**params, "description": (
            "precomputed maps; depth kept as stored" if kind == DEPTH and not renormalise
            else "precomputed maps; rescaled to max 60000" if kind == DEPTH
            else "precomputed disparity inverted (data_prep/depth_convert.py)")}}  # fmt: skip
    else:
        estimator.load(device)  # even with nothing to do: the record needs its config
        stream = _run_model(estimator, index.root, out, todo, batch_size, workers, max_ratio)
        info = {"estimator": {**estimator.record(), "max_ratio": max_ratio}}
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
    result.skipped = _finish(out, info, len(records), num_maps, skips)
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
                     "local model folder, or random:<depth-anything-tiny|dpt-tiny> (tests)")  # fmt: skip
    how.add_argument("--import-from", metavar="DIR", help="folder of precomputed maps "
                     "(<stem>_depth.png, <stem>._depth.png or LeReS <stem>.png); SRC = beside")  # fmt: skip
    parser.add_argument("--kind", choices=PREDICTION_KINDS, default=DEPTH,
                        help="what imported maps hold (disparity: larger = nearer)")  # fmt: skip
    parser.add_argument("--renormalise", action="store_true",
                        help="rescale imported depth maps to a per-image max of 60000")  # fmt: skip
    parser.add_argument("--prediction", choices=("auto", *PREDICTION_KINDS), default="auto",
                        help="what the model predicts (auto: from its config)")  # fmt: skip
    parser.add_argument("--max-ratio", type=float, default=DEFAULT_MAX_RATIO,
                        help="far/near range kept when inverting disparity")  # fmt: skip
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
            dtype=args.dtype, seed=args.seed, overwrite=args.overwrite, progress=not args.quiet,
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
