"""Import one precomputed depth map (the original releases, a LeReS dump, any estimator's PNGs).

Where the map of ``<dir>/<stem>.<ext>`` is looked for under the import root, in order:
``<dir>/<stem>_depth.png`` (the original's loader, spec 5.1), ``<dir>/<stem>._depth.png`` (the
original README's spelling) and, when the import root is not the image folder,
``<dir>/<stem>.png`` (the AdelaiDepth/LeReS dump naming that the original's merge script reads,
spec 9 step 3).

Checks: the map decodes (16-bit kept, 8-bit x 256 as the original loads ZoeDepth PNGs), has the
image's aspect ratio (2 % tolerance) and is not all zero. Conversion: ``kind="depth"`` keeps the
stored values (the releases are LeReS depth already scaled to max 60000; ``renormalise`` rescales
to that convention), ``kind="disparity"`` inverts (``depth_convert.prediction_to_depth``). Maps of
another size are resized bilinearly to the image size. A map that needs no change is copied byte
for byte. :func:`run_import` runs the imports in chunks, on a pool of spawned processes.
"""

import multiprocessing
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from data_prep import common
from data_prep.depth.convert import DEPTH, prediction_to_depth, resize_depth
from data_prep.folder_source import depth_relpath
from data_prep.images import ImageSkip, load_depth
from data_prep.shards.worker import ASPECT_TOLERANCE, DEPTH_MISMATCH, DEPTH_UNREADABLE, NO_DEPTH
from data_prep.tar_source import open_image

IMAGE_UNREADABLE = "image_unreadable"
DEPTH_DEGENERATE = "depth_degenerate"  # all zero / non-finite: an estimator failure
EXIF_ORIENTATION = 0x0112
PNG_LEVEL = 1  # zlib level of written maps: intermediate files, speed over size
IMPORT_CHUNK = 64  # images per task of the import pool


@dataclass(frozen=True)
class ImportSettings:
    image_root: str
    depth_src: str  # where the precomputed maps are
    out: str
    kind: str = DEPTH  # what the stored maps hold: "depth" (larger = farther) or "disparity"
    renormalise: bool = False  # rescale depth maps to the per-image max 60000
    max_ratio: float = 10.0  # disparity inversion range (depth_convert)


def displayed_size(path: Path | BinaryIO) -> tuple[int, int]:
    """(width, height) after EXIF orientation, as ``images.load_rgb`` (and LeReS, through
    OpenCV) see the image; read from the header, without decoding."""
    with Image.open(path) as img:
        w, h = img.size
        rotated = img.getexif().get(EXIF_ORIENTATION) in (5, 6, 7, 8)
    return (h, w) if rotated else (w, h)


def find_precomputed(settings: ImportSettings, relpath: str) -> Path | None:
    p, root = Path(relpath), Path(settings.depth_src)
    names = [depth_relpath(relpath), (p.parent / f"{p.stem}._depth.png").as_posix()]
    if root.resolve() != Path(settings.image_root).resolve():
        names.append((p.parent / f"{p.stem}.png").as_posix())
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


def write_atomic(path: Path, data: bytes | None = None, copy_from: Path | None = None) -> None:
    """Write ``data`` (or a copy of ``copy_from``) to ``path`` via a temp file + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = common.temp_path(path)
    try:
        if copy_from is not None:
            shutil.copyfile(copy_from, tmp)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def import_one(settings: ImportSettings, relpath: str) -> tuple[str, str] | None:
    """Import the map of ``relpath``; ``None`` on success, else ``(reason, detail)``."""
    try:
        w, h = displayed_size(open_image(Path(settings.image_root), relpath))
    except (OSError, SyntaxError, ValueError, ImageSkip) as err:
        return IMAGE_UNREADABLE, str(err)
    src = find_precomputed(settings, relpath)
    if src is None:
        return NO_DEPTH, f"no {depth_relpath(relpath)} under {settings.depth_src}"
    try:
        with Image.open(src) as probe:
            is_16bit = probe.mode.startswith("I;16")
        raw = load_depth(src)
    except (ImageSkip, OSError) as err:
        return DEPTH_UNREADABLE, f"{src.name}: {err}"
    dh, dw = raw.shape[:2]
    if abs((dw / dh) / (w / h) - 1.0) > ASPECT_TOLERANCE:
        return DEPTH_MISMATCH, f"image {w}x{h} but depth {dw}x{dh}"
    if raw.max() == 0:
        return DEPTH_DEGENERATE, f"{src.name} is all zero"
    dst = Path(settings.out) / depth_relpath(relpath)
    if settings.kind == DEPTH and not settings.renormalise:
        if is_16bit and (dh, dw) == (h, w):
            write_atomic(dst, copy_from=src)  # already in the shard convention
        else:
            write_atomic(dst, common.encode_png(resize_depth(raw, (w, h)), PNG_LEVEL))
        return None
    values = raw.astype(np.float64)
    if settings.kind == DEPTH:
        depth = values
    else:
        depth = prediction_to_depth(values, settings.kind, settings.max_ratio)
    write_atomic(dst, common.encode_relative_depth(resize_depth(depth, (w, h)), PNG_LEVEL))
    return None


def import_chunk(args: tuple[ImportSettings, list[str]]) -> list[tuple[str, str, str]]:
    """Import a list of images (one pool task; this module imports no torch, so spawned
    workers start fast); returns ``(relpath, reason, detail)`` of the skipped ones."""
    settings, relpaths = args
    skips = []
    for rel in relpaths:
        try:
            res = import_one(settings, rel)
        except Exception as err:  # noqa: BLE001 - one odd file must not stop the run
            res = ("error", f"{type(err).__name__}: {err}")
        if res is not None:
            skips.append((rel, *res))
    return skips


def run_import(settings: ImportSettings, todo: list[str], workers: int) -> Iterator[tuple]:
    """(number of images done, their skips) per chunk of ``IMPORT_CHUNK`` images; ``workers``
    spawned processes (0: this one)."""
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
