"""Checkpoint I/O that never leaves a half-written checkpoint behind, and records each file's
SHA-256 in a ``<name>.sha256`` sidecar so a resume can tell a damaged file (gp3d.utils.resume)."""

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gp3d.utils.resume import file_sha256, sidecar_of


def atomic_torch_save(obj: Any, path: str | os.PathLike, checksum: bool = False) -> None:
    """torch.save to a temporary sibling, fsync, then rename over ``path`` (atomic on POSIX).

    With ``checksum`` the file's SHA-256 goes to ``<path>.sha256`` (written and renamed the same
    way, after the checkpoint: a kill between the two renames leaves a mismatch, which a resume
    treats as damage and falls back to the previous checkpoint, never a false "valid")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        digest = file_sha256(tmp) if checksum else None
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if digest is not None:
        _atomic_write_text(sidecar_of(path), f"{digest}  {path.name}\n")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO plugin: an interrupted save keeps the previous file intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        atomic_torch_save(checkpoint, path, checksum=True)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        sidecar_of(path).unlink(missing_ok=True)
