"""Choosing the checkpoint to resume from: newest valid, damaged files detected and skipped."""

import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gp3d.callbacks.checkpoint import KimgCheckpoint
from gp3d.utils.checkpoint_io import AtomicCheckpointIO
from gp3d.utils.resume import ResumeError, checkpoint_problem, resolve_resume, sidecar_of


def _write(path: Path, nimg: int, mtime: int) -> Path:
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"nimg": torch.tensor(nimg)}}, path)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
    return path


@pytest.fixture
def run(tmp_path) -> Path:
    ckpts = tmp_path / "checkpoints"
    _write(ckpts / "kimg000001.ckpt", 1000, 100)
    _write(ckpts / "kimg000002.ckpt", 2000, 200)
    _write(ckpts / "last.ckpt", 2500, 300)
    _write(ckpts / "best.ckpt", 2600, 400)  # never a resume candidate
    return tmp_path


def _nimg(path: str) -> int:
    return int(torch.load(path, weights_only=False)["state_dict"]["nimg"])


def test_latest_is_the_newest_valid_checkpoint_not_best(run):
    assert sidecar_of(run / "checkpoints" / "last.ckpt").is_file()
    assert _nimg(resolve_resume("latest", run)) == 2500
    assert _nimg(resolve_resume(str(run), run / "new_run")) == 2500  # a run folder


def test_latest_without_checkpoints_starts_fresh_but_a_named_folder_must_have_one(tmp_path):
    assert resolve_resume("latest", tmp_path) is None
    assert resolve_resume(None, tmp_path) is None
    with pytest.raises(ResumeError, match=str(tmp_path)):
        resolve_resume(str(tmp_path), tmp_path / "new_run")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, zip index intact: only the checksum can tell
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte])
def test_damaged_newest_is_reported_and_the_previous_one_used(run, damage, caplog):
    last = run / "checkpoints" / "last.ckpt"
    damage(last)
    os.utime(last, ns=(300 * 10**9, 300 * 10**9))
    assert checkpoint_problem(last) is not None
    with caplog.at_level(logging.WARNING, logger="gp3d.resume"):
        chosen = resolve_resume("latest", run)
    assert _nimg(chosen) == 2000
    assert str(last) in caplog.text
    # A damaged file named explicitly: the newest valid one older than it, also reported.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gp3d.resume"):
        assert _nimg(resolve_resume(str(last), run)) == 2000
    assert str(last) in caplog.text


def test_truncated_file_without_sidecar_fails_to_load(run):
    path = run / "checkpoints" / "kimg000002.ckpt"
    sidecar_of(path).unlink()
    assert checkpoint_problem(path) is None
    _truncate(path)
    assert "cannot be loaded" in checkpoint_problem(path)


def test_no_valid_checkpoint_left_is_an_error_naming_the_file(run):
    for p in (run / "checkpoints").glob("*.ckpt"):
        _truncate(p)
    with pytest.raises(ResumeError, match="last.ckpt"):
        resolve_resume(str(run / "checkpoints" / "last.ckpt"), run)
    assert resolve_resume("latest", run) is None  # logged; a fresh start


def test_keep_last_prunes_old_snapshots_and_their_sidecars(run):
    cb = KimgCheckpoint(every_kimg=1, keep_last=1)
    cb._prune(SimpleNamespace(global_rank=0, default_root_dir=str(run)))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [
        "best.ckpt",
        "best.ckpt.sha256",
        "kimg000002.ckpt",
        "kimg000002.ckpt.sha256",
        "last.ckpt",
        "last.ckpt.sha256",
    ]
    assert KimgCheckpoint(every_kimg=0.008).snapshot_name(12) == "nimg0000000012.ckpt"
