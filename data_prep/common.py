"""Shard format shared by every gp3d data pipeline: atomic tar shards plus ``manifest.json``.

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

import contextlib
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FORMAT_NAME = "gp3d-webdataset"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SHARD_PATTERN = "shard-{:06d}.tar"
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


# ------------------------------------------------------------------------------------------------
# Sample encoders


def encode_png(image: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG bytes of a uint8 ``[H, W, 3]`` (or ``[H, W]``) or uint16 ``[H, W]`` array
    (``compress_level`` 1 encodes ~3x faster than PIL's default 6 for slightly larger files)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(
        buf, format="PNG", compress_level=compress_level
    )
    return buf.getvalue()


def encode_relative_depth(estimate: np.ndarray, compress_level: int = 6) -> bytes:
    """16-bit PNG of a positive relative depth map ``[H, W]``, scaled so its max is 60000."""
    est = np.asarray(estimate, dtype=np.float64)
    peak = float(est.max())
    if not np.isfinite(peak) or peak <= 0:
        raise ValueError("relative depth must be finite with a positive maximum")
    raw = np.clip(np.rint(est / peak * DEPTH_MAX_VALUE), 0, 65535).astype(np.uint16)
    return encode_png(raw, compress_level)


def encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


# ------------------------------------------------------------------------------------------------
# Atomic writing


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def temp_path(path: Path) -> Path:
    """Hidden sibling of ``path`` that never matches ``*.tar`` / ``manifest.json``."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


class AtomicShardWriter:
    """Write one tar shard; it appears under its final name only once :meth:`commit` succeeds.

    Tar headers are fixed (mtime 0, uid/gid 0, mode 0644), so the bytes depend on the samples
    alone. Used as a context manager it commits on success and deletes the temp file on any
    exception (including KeyboardInterrupt).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.tmp = temp_path(self.path)
        self.num_samples = 0
        self._file = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit()/abort()
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

    def write(self, sample: dict[str, Any]) -> None:
        """Add one sample: ``{"__key__": str, ext: bytes | str, ...}``."""
        key = sample["__key__"]
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
        for ext, value in sample.items():
            if ext == "__key__":
                continue
            data = value.encode() if isinstance(value, str) else bytes(value)
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self.num_samples += 1

    def commit(self) -> dict[str, Any]:
        """Finish the tar, fsync, rename into place; returns the manifest's shard entry."""
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)
        return {
            "name": self.path.name,
            "num_samples": self.num_samples,
            "bytes": self.path.stat().st_size,
            "sha256": _sha256(self.path),
        }

    def abort(self) -> None:
        """Close and delete the temp file (safe to call more than once)."""
        for closable in (self._tar, self._file):
            with contextlib.suppress(Exception):  # a broken stream may fail to close; clean up
                closable.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.shard_info = self.commit()
        else:
            self.abort()


def write_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Validate ``manifest`` and write it atomically as ``folder/manifest.json``."""
    validate_manifest(manifest, Path(folder))
    path = Path(folder) / MANIFEST_NAME
    tmp = temp_path(path)
    try:
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ------------------------------------------------------------------------------------------------
# Reading and validation


def _create_advice(folder: Path, create_hint: str | None) -> str:
    cmd = f"python -m data_prep.synthetic --out {folder}"
    return f"Create it with `{cmd}`" + (f" (or `{create_hint}`)." if create_hint else ".")


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
        if verify_checksums and _sha256(shard_file) != shard["sha256"]:
            raise DatasetFormatError(f"shard {shard_file} does not match its sha256 in {path}")
    return manifest


def manifest_sha256(manifest: dict[str, Any]) -> str:
    """Content hash of a manifest (it lists every shard's sha256, so it identifies the data)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def shard_paths(folder: str | os.PathLike, manifest: dict[str, Any]) -> list[str]:
    """Absolute paths of the manifest's shards, in manifest order."""
    return [str(Path(folder).resolve() / s["name"]) for s in manifest["shards"]]
