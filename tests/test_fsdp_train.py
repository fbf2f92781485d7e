"""Slow: ``trainer=fsdp`` really trains the smoke experiment in 2 CPU processes (gloo), FSDP2
sharding G's parts and D's blocks: the ranks end with identical gathered G, D and G_ema; the
weights equal those of the same run under ``trainer=ddp_sim`` (PhaseDDPStrategy, whose per-phase
all-reduce tests/test_phase_ddp.py checks against a single process); the checkpoint is one full
state dict; a run resumed from it continues the count and stays identical across ranks.

Why DDP and not a 1-process run as the reference: every rank draws its own latents, cameras and
patches (seed * world + rank, ``lit_module.setup``), so no single process draws the same global
batch; the two 2-process runs draw exactly the same numbers and differ only in how gradients
are combined (reduce-scatter of shards vs one flat all-reduce).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train_process import SMOKE, prepared_data

ROOT = Path(__file__).resolve().parents[1]
BASE = [o for o in SMOKE if not o.startswith("trainer=")] + [
    "data.batch_size=8",  # 4 per process
    "model.total_kimg=0.016",  # 2 iterations; r1_interval 2 (smoke): R1 in the first
]


def _start(run: Path, data: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "gp3d.train", *BASE, f"paths.data_dir={data}"]
    cmd += [f"hydra.run.dir={run}", "+callbacks.rank_dump._target_=tests.rank_dump.RankDump"]
    cmd += [
        f"+callbacks.rank_dump.out_dir={run / 'ranks'}",
        "+callbacks.rank_dump.save_weights=true",
    ]
    run.mkdir(parents=True, exist_ok=True)
    log = open(run / "stdout.txt", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([*cmd, *overrides], cwd=ROOT, env=env, stdout=log, stderr=log)


def _finish(proc: subprocess.Popen, run: Path) -> dict:
    assert proc.wait(timeout=3000) == 0, (run / "stdout.txt").read_text()[-4000:]
    ranks = [json.loads((run / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # gathered G, D and G_ema bit-identical on both ranks
    return ranks[0]


FSDP = ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2"]


@pytest.mark.slow
def test_fsdp_trains_like_ddp_checkpoints_and_resumes(tmp_path):
    data = prepared_data(tmp_path / "data")
    fsdp, ddp = (
        _start(tmp_path / "fsdp", data, *FSDP),
        _start(tmp_path / "ddp", data, "trainer=ddp_sim"),
    )
    rec = _finish(fsdp, tmp_path / "fsdp")
    _finish(ddp, tmp_path / "ddp")
    assert rec["sharded"] == {"G": True, "D": True, "G_ema": False}
    assert rec["nimg"] == 16

    ours = torch.load(tmp_path / "fsdp" / "ranks" / "weights.pt", weights_only=True)
    ref = torch.load(tmp_path / "ddp" / "ranks" / "weights.pt", weights_only=True)
    assert ours.keys() == ref.keys()
    for name in ref:
        # same draws, same data: only the gradient reduction differs (2 ranks: a sum of two
        # halves either way, so this CPU gives bit-identical weights); Adam's first steps are
        # ~lr * sign(g), so allow a rounding-size difference only
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-5, atol=1e-6, msg=name)

    ckpt_path = tmp_path / "fsdp" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert int(ckpt["state_dict"]["nimg"]) == 16
    for name, t in ckpt["state_dict"].items():  # full tensors, loadable without FSDP
        if name.startswith(("G.", "D.")):
            assert type(t) is torch.Tensor and t.shape == ref[name].shape, name
    assert len(ckpt["optimizer_states"]) == 2 and all(s["state"] for s in ckpt["optimizer_states"])

    resumed = _start(
        tmp_path / "resumed", data, *FSDP, f"resume={ckpt_path}", "model.total_kimg=0.032"
    )
    rec2 = _finish(resumed, tmp_path / "resumed")
    assert rec2["nimg"] == 32  # continued from 16 images, 2 more iterations
    assert (
        "Restored all states from the checkpoint"
        in (tmp_path / "resumed" / "stdout.txt").read_text()
    )
