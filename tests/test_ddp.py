"""Slow: a real 2-process DDP training run on CPU (gloo), through the Hydra entry point: the ranks
end with bit-identical G, D and G_ema, and progress counts the global batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_ddp_training_run(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "gp3d.train",
        "experiment=smoke",
        *TINY,
        "trainer=ddp_sim",
        "data.batch_size=8",
        "model.total_kimg=0.016",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "+callbacks.rank_dump._target_=tests.rank_dump.RankDump",
        f"+callbacks.rank_dump.out_dir={tmp_path / 'ranks'}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import torch

    ckpt = torch.load(
        tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    # 2 iterations x global batch 8 (4 per process): progress counts images over all ranks
    assert int(ckpt["state_dict"]["nimg"]) == 16
    # PhaseDDPStrategy: per-phase gradient all-reduce keeps G, D and G_ema bit-identical
    import json

    ranks = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    assert "PhaseDDPStrategy" in (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
