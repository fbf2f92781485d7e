"""Training as a real subprocess (``python -m gp3d.train``), for tests that send it signals."""

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from gp3d.data.prepare import prepare_dataset
from tests.helpers import compose_train

ROOT = Path(__file__).resolve().parents[1]

# The smoke experiment, one thread (deterministic and not slowed by a busy CPU), CSV logs every
# step, a snapshot every step (4 images), no metric callbacks at the end.
SMOKE = [
    "experiment=smoke",
    "trainer=cpu",
    "logger=csv",
    "data.use_embeddings=false",
    "trainer.log_every_n_steps=1",
    "callbacks.checkpoint.every_kimg=0.004",
    "callbacks.checkpoint.keep_last=null",
    "~callbacks.fid",
    "~callbacks.nfs",
    "~callbacks.samples",
    "~callbacks.video",
    "~callbacks.progress",
    "+trainer.enable_progress_bar=false",
]


def prepared_data(data_dir: Path) -> Path:
    """Create the smoke dataset once (subprocesses would race to create it)."""
    cfg = compose_train(SMOKE, data_dir / "unused", data_dir)
    prepare_dataset(cfg.data)
    return data_dir


def start(run_dir: Path, data_dir: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    cmd = [
        sys.executable,
        "-m",
        "gp3d.train",
        *SMOKE,
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "stdout.txt", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def snapshots(run_dir: Path) -> list[int]:
    """nimg of the periodic snapshots written so far (complete files only: atomic renames)."""
    return sorted(int(p.stem[4:]) for p in (run_dir / "checkpoints").glob("nimg*.ckpt"))


def wait_for_nimg(proc: subprocess.Popen, run_dir: Path, nimg: int, timeout: float = 300) -> int:
    """Block until a snapshot at >= ``nimg`` images exists; returns the newest snapshot's nimg."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done = snapshots(run_dir)
        if done and done[-1] >= nimg:
            return done[-1]
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}):\n{output(run_dir)}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no snapshot at {nimg} images after {timeout} s:\n{output(run_dir)}")


def output(run_dir: Path) -> str:
    return (run_dir / "stdout.txt").read_text()[-4000:]


def ckpt_nimg(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["state_dict"]["nimg"])
