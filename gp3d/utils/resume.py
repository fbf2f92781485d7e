"""Which checkpoint a run resumes from: ``resume=latest``, a run folder or a checkpoint file,
checked before use so a truncated or corrupt file costs one checkpoint interval, not the run.

Every checkpoint written through ``AtomicCheckpointIO`` has a ``<name>.sha256`` sidecar. A file is
valid when its sidecar (if any) matches and ``torch.load`` can open it; an invalid one is reported
with its path and the next older checkpoint of the same folder is tried.
"""

import hashlib
import logging
import os
from pathlib import Path

import torch

log = logging.getLogger("gp3d.resume")

SIDECAR = ".sha256"


class ResumeError(FileNotFoundError):
    """No usable checkpoint where the config says to resume from."""


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sidecar_of(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR)


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be resumed from, or None when it can."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    sidecar = sidecar_of(path)
    if sidecar.is_file():
        expected = (sidecar.read_text().split() or [""])[0]
        if file_sha256(path) != expected:
            return f"sha256 differs from {sidecar.name} (truncated or corrupt)"
    try:  # mmap: the zip index and record headers are read, the tensors are not copied
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any load failure means "do not use this file"
        return f"cannot be loaded ({type(err).__name__}: {err})"
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        return "not a Lightning checkpoint (no state_dict)"
    return None


def run_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """A run folder's resumable checkpoints, newest first: ``checkpoints/*.ckpt`` (periodic
    snapshots and last.ckpt, not best.ckpt, which may be older than the run's progress) and
    Lightning's SLURM ``hpc_ckpt_*.ckpt`` in the folder itself."""
    run_dir = Path(run_dir)
    found = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if not p.name.startswith("best")]
    found += list(run_dir.glob("hpc_ckpt_*.ckpt"))
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True)


def first_valid(candidates: list[Path]) -> Path | None:
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        log.warning("skipping checkpoint %s: %s; trying the previous one", path, problem)
    return None


def resolve_resume(resume: str | None, run_dir: str | os.PathLike) -> str | None:
    """The checkpoint to pass to ``Trainer.fit(ckpt_path=...)``.

    Args:
        resume: None (start fresh); ``latest`` (the newest valid checkpoint of ``run_dir``, or a
            fresh start when it has none: the first launch of a re-queued job); a run folder (its
            newest valid checkpoint; error if none); or a checkpoint file (that file, or the newest
            valid one older than it in the same folder when it is corrupt).
        run_dir: this run's output folder (``paths.output_dir`` = ``hydra.run.dir``).
    """
    if resume is None or str(resume) in ("", "null", "none"):
        return None
    if str(resume) == "latest":
        path = first_valid(run_checkpoints(run_dir))
        if path is None:
            log.info("resume=latest: no valid checkpoint in %s; starting from scratch", run_dir)
            return None
        log.info("resume=latest: resuming from %s", path)
        return str(path)
    target = Path(resume)
    if target.is_dir():
        path = first_valid(run_checkpoints(target))
        if path is None:
            raise ResumeError(
                f"resume={resume}: no valid checkpoint in {target}/checkpoints; pass a .ckpt file, "
                "or resume=latest with hydra.run.dir set to the run folder"
            )
        log.info("resuming from %s (newest valid checkpoint of %s)", path, target)
        return str(path)
    problem = checkpoint_problem(target)
    if problem is None:
        return str(target)
    log.warning("checkpoint %s: %s", target, problem)
    folder = target.parent.parent if target.parent.name == "checkpoints" else target.parent
    older = [
        p
        for p in run_checkpoints(folder)
        if p != target
        and (not target.exists() or p.stat().st_mtime_ns <= target.stat().st_mtime_ns)
    ]
    path = first_valid(older)
    if path is None:
        raise ResumeError(
            f"resume={resume}: the checkpoint is unusable ({problem}) and {folder} has no older "
            "valid one; start again without resume"
        )
    log.warning("resuming from %s instead of the unusable %s", path, target)
    return str(path)
