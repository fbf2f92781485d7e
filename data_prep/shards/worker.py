"""One shard of ``write_shards``: read, convert, crop, resize and encode its images (spec 9 step 4).

A worker process runs :func:`write_one_shard` for a whole shard. Every per-image failure becomes
a counted skip (``reason`` + detail), never an exception that stops a million-image run. The
shard is written with :class:`common.AtomicShardWriter` (temp file + rename); afterwards a small
hidden *record* (labels, skips, source modes, size, sha256) is written atomically beside it, so a
resumed run can reuse the shard without decoding it again. A shard whose images were all skipped
is not written at all (its record says so).
"""

import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from data_prep import common
from data_prep.folder_source import depth_relpath
from data_prep.images import ImageSkip, crop_resize, load_depth, load_rgb_and_mode
from data_prep.tar_source import open_image

WORK_DIR = ".write-shards"  # hidden: run parameters and per-shard records (for resuming)
NO_DEPTH, DEPTH_UNREADABLE, DEPTH_MISMATCH = "no_depth", "depth_unreadable", "depth_mismatch"
ERROR = "error"  # anything unexpected while converting one image (detail in skipped.txt)
ASPECT_TOLERANCE = 0.02  # depth may be estimated at a lower resolution, but not another shape
JPEG_QUALITY = 95  # the original's resize_dataset.py quality for JPEG output
# zlib level of the PNGs: 1 encodes ~2.5x faster than PIL's default 6 for ~3% larger files
# (256 px photo + depth: 9 ms vs 23 ms per sample); decoding speed does not depend on it.
DEFAULT_PNG_LEVEL = 1


@dataclass(frozen=True)
class EncodeSettings:
    """Everything a worker needs besides the shard's items (picklable)."""

    root: str  # image paths are relative to this folder
    depth_root: str  # depth maps at <depth_root>/<stem>_depth.png (or <stem>._depth.png)
    out: str
    resolution: int
    min_size: int
    image_format: str  # "png" or "jpg"
    write_meta: bool = True
    png_level: int = DEFAULT_PNG_LEVEL


@dataclass(frozen=True)
class ShardJob:
    index: int
    # (sample key, image relpath, label, tar member offset, size): offset -1 for a file
    items: tuple[tuple[str, str, int, int, int], ...]


def shard_name(index: int) -> str:
    return common.SHARD_PATTERN.format(index)


def record_path(out: str | os.PathLike, index: int) -> Path:
    return Path(out) / WORK_DIR / f"{shard_name(index)}.json"


def find_depth(depth_root: Path, relpath: str) -> Path | None:
    """The depth map of ``relpath``: ``<stem>_depth.png`` (the original's loader) or
    ``<stem>._depth.png`` (the spelling of the original README), in that order (spec 5.1)."""
    p = Path(relpath)
    for candidate in (depth_relpath(relpath), (p.parent / f"{p.stem}._depth.png").as_posix()):
        path = depth_root / candidate
        if path.is_file():
            return path
    return None


def encode_image(array: np.ndarray, image_format: str, png_level: int) -> bytes:
    """PNG (uint8 RGB or uint16 grey) or JPEG (quality 95) bytes of an array."""
    buf = io.BytesIO()
    if image_format == "png":
        Image.fromarray(np.ascontiguousarray(array)).save(
            buf, format="PNG", compress_level=png_level
        )
    else:
        Image.fromarray(array).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def encode_sample(
    settings: EncodeSettings, key: str, relpath: str, label: int, offset: int = -1, size: int = -1
) -> tuple[dict[str, Any], str]:
    """(sample dict, original PIL mode) of one image; raises :class:`ImageSkip` to skip it.

    Image and depth go through the same centre crop and Lanczos resize, so they stay aligned
    (spec 9 step 4). Depth values are kept as stored (no re-normalisation after the crop, as
    the original's resize script); Lanczos ringing is clipped to the 16-bit range.
    """
    image = open_image(Path(settings.root), relpath, offset, size)
    rgb, mode = load_rgb_and_mode(image, settings.min_size)
    depth_file = find_depth(Path(settings.depth_root), relpath)
    if depth_file is None:
        raise ImageSkip(NO_DEPTH, f"no {depth_relpath(relpath)} under {settings.depth_root}")
    try:
        depth = load_depth(depth_file)
    except ImageSkip as err:
        raise ImageSkip(DEPTH_UNREADABLE, f"{depth_file.name}: {err.detail}") from err
    (h, w), (dh, dw) = rgb.shape[:2], depth.shape[:2]
    if abs((dw / dh) / (w / h) - 1.0) > ASPECT_TOLERANCE:
        raise ImageSkip(DEPTH_MISMATCH, f"image {w}x{h} but depth {dw}x{dh}")
    res, level = settings.resolution, settings.png_level
    sample: dict[str, Any] = {
        "__key__": key,
        settings.image_format: encode_image(crop_resize(rgb, res), settings.image_format, level),
        "depth.png": encode_image(crop_resize(depth, res), "png", level),
        "cls": str(label),
    }
    if settings.write_meta:
        sample["meta.json"] = common.encode_json({"source": relpath, "width": w, "height": h})
    return sample, mode


def _write_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = common.temp_path(path)
    tmp.write_text(json.dumps(record, sort_keys=True))
    os.replace(tmp, path)


def load_valid_record(out: Path, index: int) -> dict[str, Any] | None:
    """The record of a shard committed by an earlier run, if the shard on disk still matches."""
    try:
        record = json.loads(record_path(out, index).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("name") is None:  # every image skipped: nothing was written
        return record if record.get("num_samples") == 0 else None
    shard = out / record["name"]
    if not shard.is_file() or shard.stat().st_size != record["bytes"]:
        return None
    return record if common.file_sha256(shard) == record["sha256"] else None


def write_one_shard(settings: EncodeSettings, job: ShardJob) -> dict[str, Any]:
    """Write shard ``job.index`` (or reuse it) and return its record (``"reused"`` says which)."""
    out = Path(settings.out)
    record = load_valid_record(out, job.index)
    if record is not None:
        return {**record, "reused": True}
    path = out / shard_name(job.index)
    labels: Counter[int] = Counter()
    modes: Counter[str] = Counter()
    skipped: list[list[str]] = []
    writer = common.AtomicShardWriter(path)
    try:
        for key, relpath, label, offset, size in job.items:
            try:
                sample, mode = encode_sample(settings, key, relpath, label, offset, size)
            except ImageSkip as skip:
                skipped.append([relpath, skip.reason, skip.detail])
                continue
            except Exception as err:  # noqa: BLE001 - one odd file must not stop the run
                skipped.append([relpath, ERROR, f"{type(err).__name__}: {err}"])
                continue
            writer.write(sample)
            labels[label] += 1
            modes[mode] += 1
        if writer.num_samples:
            info = writer.commit()
        else:
            writer.abort()
            path.unlink(missing_ok=True)  # a stale shard of the same name must not survive
            info = {"name": None, "num_samples": 0, "bytes": 0, "sha256": None}
    except BaseException:
        writer.abort()
        raise
    record = {
        **info,
        "index": job.index,
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "modes": dict(sorted(modes.items())),
        "skipped": skipped,
    }
    _write_record(record_path(out, job.index), record)
    return {**record, "reused": False}
