"""Add teacher features (``emb.npy``) to every sample of a shard folder (spec 6.5, 9 step 5).

    # into a new folder, weights from a local file (or --pretrained: timm download)
    python -m data_prep.extract_features data/in256 --out data/in256_emb --weights resnet50.pth
    # in place; offline synthetic data / tests only: random teacher, small input
    python -m data_prep.extract_features data/synthetic64 --random-init --input-size 64

Each output sample is the source sample plus ``emb.npy``: a ``.npy`` vector ``[D]``, **float32**
by default (the original stores a float32 memmap; ``--dtype float16`` halves it); the data
module decodes either to float32. Features are those of the full, un-flipped image after
timm's eval transform for the model (spec 6.5; the loader's x-flip never touches them). The
manifest gains ``"emb.npy"`` in ``keys``, ``embedding_dim`` and a ``teacher`` record (model,
weights source, transform, dtype, source manifest hash); see ``data_prep/features/teacher.py``.

Safety: shards are written one by one with :class:`common.AtomicShardWriter` and the manifest
last, so an interrupted run leaves nothing that looks complete. A re-run with the same source and
teacher skips the shards already written (a hidden state file keeps their parameters); a
finished output is reused at once. With ``--out`` shards go straight into the new folder; in
place they are staged in ``<src>/.teacher-staging`` and swapped in when all are done (a
two-phase swap that a re-run completes if it was cut short). One process per output folder.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data_prep import common
from data_prep.features.teacher import PRETRAINED, RANDOM, Teacher, teacher_identity

STATE_NAME = ".teacher-state.json"  # hidden: parameters of a run in progress (for resuming)
STAGING_NAME = ".teacher-staging"  # hidden: in-place runs stage their shards here
_SHARD_RE = re.compile(r"^shard-\d{6}\.tar$")


@dataclass
class ExtractResult:  # what a run did: output folder, shards written / reused, images embedded
    path: Path
    shards_written: int = 0
    shards_skipped: int = 0
    images: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def read_shard(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Samples of a tar shard, in order: ``{"__key__": key, ext: bytes, ...}``."""
    samples: dict[str, dict[str, Any]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile():
                key, ext = member.name.split(".", 1)
                samples.setdefault(key, {"__key__": key})[ext] = tar.extractfile(member).read()
    return list(samples.values())


def embed_shard_samples(
    teacher: Teacher, src: Path, batch: int, workers: int
) -> tuple[list[dict[str, Any]], Any]:
    """(samples, features ``[N, D]``) of one source shard: full, un-flipped images (spec 6.5)."""
    samples, blobs = read_shard(src), []
    for s in samples:
        image_key = next((k for k in common.IMAGE_KEYS if k in s), None)
        if image_key is None:
            raise common.DatasetFormatError(f"sample {s['__key__']} of {src} has no image")
        blobs.append(s[image_key])
    return samples, teacher.embed(blobs, batch, workers)


def write_shard_with_features(dst: Path, samples: list[dict[str, Any]], feats: Any) -> dict:
    """Write the samples plus ``emb.npy`` atomically; returns the manifest's shard entry."""
    with common.AtomicShardWriter(dst) as writer:
        for sample, feat in zip(samples, feats, strict=True):
            out = {k: v for k, v in sample.items() if k != "emb.npy"}  # replace an old one
            out["emb.npy"] = common.encode_npy(feat)
            writer.write(out)
    return writer.shard_info


def _embed_shard(teacher: Teacher, src: Path, dst: Path, batch: int, workers: int) -> dict:
    return write_shard_with_features(dst, *embed_shard_samples(teacher, src, batch, workers))


def _is_done(manifest: dict[str, Any], record: dict[str, Any], source_sha: str | None) -> bool:
    old = manifest.get("teacher")
    return (
        "emb.npy" in manifest["keys"]
        and isinstance(old, dict)
        and teacher_identity(old) == teacher_identity(record)
        and (source_sha is None or old.get("source", {}).get("manifest_sha256") == source_sha)
    )


def complete_interrupted_update(folder: str | os.PathLike) -> bool:
    """Finish an in-place update whose swap was cut short; True if there was one to finish.

    The staged manifest is complete before the swap starts; it is dropped if the folder's
    current manifest is not the one it was made from (the data was regenerated meanwhile).
    """
    folder = Path(folder)
    staging, live = folder / STAGING_NAME, folder / common.MANIFEST_NAME
    staged = staging / common.MANIFEST_NAME
    if not staged.is_file():
        return False
    new = json.loads(staged.read_text())
    if live.is_file():
        current = common.manifest_sha256(json.loads(live.read_text()))
        if current != new["teacher"]["source"]["manifest_sha256"]:
            shutil.rmtree(staging)
            return False
        live.unlink()  # from here the old dataset is invalid until the new manifest lands
    for p in sorted(staging.iterdir()):
        if _SHARD_RE.match(p.name):
            os.replace(p, folder / p.name)
    os.replace(staged, live)
    shutil.rmtree(staging, ignore_errors=True)
    return True


def _prepare_out(out: Path, finished: bool, overwrite: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    foreign = [p.name for p in out.iterdir() if not (_SHARD_RE.match(p.name) or p.name[0] == ".")]
    if (finished or foreign) and not overwrite:
        what = "a dataset with other features or source" if finished else f"other files {foreign}"
        raise FileExistsError(f"{out} holds {what}; pass --overwrite or choose another --out")
    (out / common.MANIFEST_NAME).unlink(missing_ok=True)


def _reset_if_stale(work: Path, state: dict[str, Any]) -> None:
    """Keep ``work``'s finished shards only if they were made with these exact parameters."""
    work.mkdir(parents=True, exist_ok=True)
    for p in work.iterdir():  # temp files of killed runs (one process per folder)
        if ".tmp-" in p.name and not p.name.endswith(f".tmp-{os.getpid()}"):
            p.unlink(missing_ok=True)
    path = work / STATE_NAME
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        old = None
    if old != state:
        for p in work.iterdir():
            if _SHARD_RE.match(p.name):
                p.unlink(missing_ok=True)  # predict_features: every rank prepares the folder
        tmp = common.temp_path(path)
        tmp.write_text(json.dumps(state, sort_keys=True))
        os.replace(tmp, path)


@dataclass
class FeatureRun:
    """Where a run writes (``work``: shards; ``out``: the manifest) and what it reads."""

    manifest: dict[str, Any]  # the source's
    out: Path
    work: Path
    source: dict[str, Any]  # path and manifest sha256 of the source (teacher record)
    finished: bool  # the output already holds these features


def prepare_run(
    src: Path, dst: str | os.PathLike | None, teacher: Teacher, overwrite: bool
) -> FeatureRun:
    """Check the source and the output and make the work folder ready (resume / stale reset)."""
    in_place = dst is None or Path(dst).resolve() == src.resolve()
    if in_place:
        complete_interrupted_update(src)  # no-op unless a swap was cut short
    manifest = common.read_manifest(src)  # clear errors for a missing / unfinished source
    source = {"path": str(src.resolve()), "manifest_sha256": common.manifest_sha256(manifest)}
    if in_place:
        out, work = src, src / STAGING_NAME
        if _is_done(manifest, teacher.record, None):
            return FeatureRun(manifest, out, work, source, True)
    else:
        out = work = Path(dst)  # type: ignore[arg-type]
        finished = (out / common.MANIFEST_NAME).is_file()
        try:
            done = common.read_manifest(out) if finished else None
        except common.DatasetError:  # a broken output: only --overwrite may replace it
            done = None
        if done and _is_done(done, teacher.record, source["manifest_sha256"]):
            return FeatureRun(manifest, out, work, source, True)
        _prepare_out(out, finished, overwrite)
    _reset_if_stale(work, {"source": source, "teacher": teacher_identity(teacher.record)})
    return FeatureRun(manifest, out, work, source, False)


def extract_features(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    *,
    model_name: str = "resnet50",
    weights: str | os.PathLike = PRETRAINED,
    input_size: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    workers: int = 0,
    dtype: str = "float32",
    seed: int = 0,
    overwrite: bool = False,
    on_shard: Callable[[int, int], None] | None = None,
) -> ExtractResult:
    """Write ``src``'s samples plus teacher features to ``dst`` (None: update ``src`` in place).

    ``weights``: ``"pretrained"``, ``"random"`` or a local file (see ``data_prep/features/teacher.py``).
    ``input_size``: square teacher input (None: the model's default, 224 for resnet50).
    ``workers``: DataLoader processes decoding images. ``on_shard(done, total)`` is called
    after every shard. Raises ``DatasetNotFoundError`` / ``DatasetFormatError`` for a bad
    source, ``FileExistsError`` if ``dst`` holds something else and ``overwrite`` is False.
    """
    if batch_size < 1 or workers < 0:
        raise ValueError("batch_size must be >= 1 and workers >= 0")
    src = Path(src)
    teacher = Teacher(model_name, weights, input_size, seed=seed, dtype=dtype)
    run = prepare_run(src, dst, teacher, overwrite)
    manifest, out, work, source = run.manifest, run.out, run.work, run.source
    num_shards = len(manifest["shards"])
    if run.finished:
        return ExtractResult(out, shards_skipped=num_shards)
    result, shards = ExtractResult(out), []
    for i, entry in enumerate(manifest["shards"]):
        target = work / entry["name"]
        if target.is_file():  # committed atomically by an earlier run with these parameters
            size, sha = target.stat().st_size, common.file_sha256(target)
            shards.append({**entry, "bytes": size, "sha256": sha})
            result.shards_skipped += 1
        else:
            if teacher.device is None:
                teacher.load(device)  # only now: a fully resumed run needs no weights
            t0 = time.perf_counter()
            shards.append(_embed_shard(teacher, src / entry["name"], target, batch_size, workers))
            result.seconds += time.perf_counter() - t0
            result.shards_written += 1
            result.images += entry["num_samples"]
        if on_shard:
            on_shard(i + 1, num_shards)
    finish_features(src, out, work, manifest, shards, teacher, source)
    return result


def finish_features(
    src: Path,
    out: Path,
    work: Path,
    manifest: dict[str, Any],
    shards: list[dict[str, Any]],
    teacher: Teacher,
    source: dict[str, Any],
) -> None:
    """Write the manifest of the shards with features (last), or stage and swap it in place."""
    new = {
        **manifest,
        "keys": manifest["keys"] + ["emb.npy"] * ("emb.npy" not in manifest["keys"]),
        "shards": shards,
        "embedding_dim": teacher.dim,
        "teacher": {**teacher.record, "source": source},
    }
    if out == src:  # phase 1: stage the complete manifest; phase 2: swap (re-runnable)
        common.write_manifest(work, new)
        complete_interrupted_update(src)
    else:
        common.write_manifest(out, new)
        (work / STATE_NAME).unlink(missing_ok=True)


def ensure_teacher_features(
    src_dir: str | os.PathLike,
    dst_dir: str | os.PathLike | None = None,
    model_name: str = "resnet50",
    weights: str | os.PathLike = PRETRAINED,
    input_size: int | None = None,
    **kwargs: Any,
) -> Path:
    """Idempotent :func:`extract_features` (computes only what is missing) for the training
    entry point (one process); returns the folder with the features (``dst_dir`` or ``src_dir``).
    ``weights``: ``"pretrained"``, ``"random"`` (testing only) or a local weights file."""
    return extract_features(
        src_dir, dst_dir, model_name=model_name, weights=weights, input_size=input_size, **kwargs
    ).path


def add_teacher_arguments(parser: argparse.ArgumentParser) -> None:
    """The CLI arguments shared by extract_features and predict_features (one process or many):
    source / output folders, the teacher and its weights, batch, dtype, seed, overwrite."""
    parser.add_argument("src", help="source shard folder (with manifest.json)")
    parser.add_argument("--out", help="output folder (default: update SRC in place)")
    parser.add_argument("--model", default="resnet50", help="timm model name (num_classes=0)")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", metavar="PATH", help="local weights file (.pth/.safetensors)")
    weights.add_argument("--pretrained", action="store_true", help="timm download (internet)")
    weights.add_argument(
        "--random-init", action="store_true", help="random teacher: testing only, not meaningful"
    )
    parser.add_argument("--input-size", type=int, help="teacher input side (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-init")
    parser.add_argument("--overwrite", action="store_true", help="replace a different --out")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.extract_features",
        description="Add teacher features (emb.npy) for knowledge distillation (spec 6.5) to a "
        "gp3d shard folder. Resumable; re-running with the same parameters reuses finished work.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_teacher_arguments(parser)
    parser.add_argument("--device", default="auto", help="auto = cuda if available, else cpu")
    parser.add_argument("--workers", type=int, default=0, help="image decoding processes")
    args = parser.parse_args(argv)
    chosen = args.weights or (PRETRAINED if args.pretrained else RANDOM)

    def progress(done: int, total: int) -> None:
        print(f"\rshards {done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        res = extract_features(
            args.src, args.out, model_name=args.model, weights=chosen, input_size=args.input_size,
            batch_size=args.batch_size, device=args.device, workers=args.workers,
            dtype=args.dtype, seed=args.seed, overwrite=args.overwrite, on_shard=progress,
        )  # fmt: skip
    except (common.DatasetError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 1
    print(
        f"\n{res.path}: {res.shards_written} shards written, {res.shards_skipped} reused; "
        f"{res.images} images in {res.seconds:.1f} s ({res.images_per_second:.1f} images/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
