"""The gp3d dataset format, shared by the training loader and every data_prep writer: atomic tar shards plus ``manifest.json``.

A dataset is a folder of WebDataset tar shards and a ``manifest.json``. **A folder without a
manifest is not a dataset**: the manifest is written last, atomically, so an interrupted run can
never look complete.

Per sample (tar members named ``<__key__>.<ext>``; keys are digits/underscores, no dots):

==================  ==========================================================================
``png``             8-bit RGB image. Readers also accept ``jpg`` / ``jpeg`` / ``webp``.
``depth.png``       16-bit grey PNG of the *monocular estimate* (relative depth, larger =
                    farther), LeReS dump convention: ``estimate / max(estimate) * 60000``, so the
                    per-image maximum is ~60000 (spec 5.1). Training reads it as
                    ``raw / 65536 * 2 - 1`` (spec 5.1 / 7.3), no per-image normalisation. An
                    8-bit PNG (ZoeDepth-style) is multiplied by 256 on load.
``cls``             class index as decimal text (``"0"`` when the dataset has no classes).
``emb.npy``         optional teacher features, float16/float32 ``[D]`` (spec 6.5, written by the
                    embedding step).
``depth_gt.npy``    synthetic only: float16 metric depth ``[H, W]`` along the ray, in
                    [near, far]; for evaluation only.
``camera.json``     synthetic only: the 8 ``gp3d.types.CAMERA_FIELDS`` of the true camera
                    (radians / degrees); for evaluation only, never used in training.
``novel_*``         synthetic held-out splits made with ``novel_views = K`` only:
                    ``novel_rgb.npy`` uint8 ``[K, H, W, 3]``, ``novel_depth_gt.npy`` float16
                    ``[K, H, W]``, ``novel_cameras.json`` a list of K camera dicts: the same
                    scene from other true cameras (read by ``gp3d/data/truth.py``).
==================  ==========================================================================

``manifest.json`` (see :func:`validate_manifest` for the required fields)::

    {"format": {"name": "gp3d-webdataset", "version": 1},
     "generator": {"name": ..., "version": ..., "params": {...}},
     "seed": 0, "num_samples": N, "resolution": 64,
     "num_classes": C, "class_names": [...], "class_counts": [...],
     "keys": ["png", "depth.png", "cls", ...],
     "shards": [{"name": "shard-000000.tar", "num_samples": n, "bytes": b, "sha256": "..."}],
     "depth": {"key": "depth.png", "encoding": "...", "normalisation": "raw / 65536 * 2 - 1"},
     "embedding_dim": null}

Atomicity: :class:`AtomicShardWriter` writes to a hidden temp name (``.<name>.tmp-<pid>``) and
``os.replace``-s it into place only when the shard is complete; :func:`write_manifest` does the
same for the manifest. Readers use only the shards listed in the manifest, so stray temp files
are ignored.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

FORMAT_NAME = "gp3d-webdataset"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SHARD_PATTERN = "shard-{:06d}.tar"
# present while a multi-machine ``write_shards --parts N`` run is unmerged (data_prep.merge_parts)
UNMERGED_PARTS_FILE = ".write-shards/parts.json"
DEPTH_MAX_VALUE = 60000  # LeReS dump convention: per-image max of the 16-bit depth (spec 5.1)
DEPTH_DESCRIPTION = {
    "key": "depth.png",
    "encoding": "16-bit PNG, relative depth (larger = farther), estimate / max * 60000",
    "normalisation": "raw / 65536 * 2 - 1",
}
IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")
REQUIRED_FIELDS = (
    "format", "generator", "seed", "num_samples", "resolution", "num_classes", "class_names",
    "class_counts", "keys", "shards", "depth", "embedding_dim",
)  # fmt: skip


class DatasetError(Exception):
    """Base class of the data errors users are meant to read."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset folder is missing, empty, or was never finished."""


class DatasetFormatError(DatasetError, ValueError):
    """The manifest or the shards do not match what gp3d expects."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _create_advice(folder: Path, create_hint: str | None) -> str:
    cmd = f"python -m data_prep.synthetic --out {folder}"
    return f"Create it with `{cmd}`" + (f" (or `{create_hint}`)." if create_hint else ".")


def _unmerged_parts_message(folder: Path) -> str:
    return (
        f"{folder} holds an unmerged `write_shards --parts` run, so it is not a dataset yet: "
        "finish every part, then run `python -m data_prep.merge_parts "
        f"{folder}` (it names any part still missing) to write its {MANIFEST_NAME}."
    )


def validate_manifest(manifest: dict[str, Any], folder: Path | None = None) -> None:
    """Raise :class:`DatasetFormatError` unless ``manifest`` follows the schema above."""
    where = f" in {folder / MANIFEST_NAME}" if folder is not None else ""
    missing = [k for k in REQUIRED_FIELDS if k not in manifest]
    if missing:
        raise DatasetFormatError(f"manifest{where} lacks fields {missing}")
    fmt = manifest["format"]
    if fmt.get("name") != FORMAT_NAME or fmt.get("version") != FORMAT_VERSION:
        raise DatasetFormatError(
            f"manifest{where} has format {fmt}; this gp3d reads {FORMAT_NAME} v{FORMAT_VERSION}"
        )
    keys = set(manifest["keys"])
    if not keys & set(IMAGE_KEYS) or "depth.png" not in keys:
        raise DatasetFormatError(
            f"manifest{where}: keys {sorted(keys)} need an image and depth.png"
        )
    if sum(s["num_samples"] for s in manifest["shards"]) != manifest["num_samples"]:
        raise DatasetFormatError(f"manifest{where}: shard sample counts do not add up")
    if len(manifest["class_counts"]) != manifest["num_classes"]:
        raise DatasetFormatError(f"manifest{where}: class_counts has the wrong length")
    if ("emb.npy" in keys) != (manifest["embedding_dim"] is not None):
        raise DatasetFormatError(f"manifest{where}: emb.npy key and embedding_dim disagree")


def read_manifest(
    folder: str | os.PathLike, verify_checksums: bool = False, create_hint: str | None = None
) -> dict[str, Any]:
    """Load and validate ``folder/manifest.json`` and check that its shards exist.

    Errors name the folder and how to create the data: :class:`DatasetNotFoundError` for a
    missing or empty folder or an unfinished one (no manifest); :class:`DatasetFormatError` for a
    bad manifest or missing/corrupt shards (sizes always, sha256 with ``verify_checksums``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"Dataset folder {folder} does not exist. {_create_advice(folder, create_hint)}"
        )
    if not any(folder.iterdir()):
        raise DatasetNotFoundError(
            f"Dataset folder {folder} is empty. {_create_advice(folder, create_hint)}"
        )
    path = folder / MANIFEST_NAME
    if not path.is_file() and (folder / UNMERGED_PARTS_FILE).is_file():
        raise DatasetNotFoundError(_unmerged_parts_message(folder))
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{folder} has no {MANIFEST_NAME}, so it is not a finished dataset (an interrupted "
            f"generation?). Re-create it with `python -m data_prep.synthetic --out {folder} "
            "--overwrite`" + (f" (or `{create_hint}`)." if create_hint else ".")
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path} is not valid JSON: {err}") from err
    validate_manifest(manifest, folder)
    for shard in manifest["shards"]:
        shard_file = folder / shard["name"]
        if not shard_file.is_file() or shard_file.stat().st_size != shard["bytes"]:
            raise DatasetFormatError(f"shard {shard_file} listed in {path} is missing or truncated")
        if verify_checksums and file_sha256(shard_file) != shard["sha256"]:
            raise DatasetFormatError(f"shard {shard_file} does not match its sha256 in {path}")
    return manifest


def manifest_sha256(manifest: dict[str, Any]) -> str:
    """Content hash of a manifest (it lists every shard's sha256, so it identifies the data)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def shard_paths(folder: str | os.PathLike, manifest: dict[str, Any]) -> list[str]:
    """Absolute paths of the manifest's shards, in manifest order."""
    return [str(Path(folder).resolve() / s["name"]) for s in manifest["shards"]]
