"""Divergence rollback: a NaN injected into G's loss at a chosen step rolls training back to the
last good checkpoint; the run finishes and the event is in the CSV log."""

import csv

import torch

import gp3d.training.lit_module as lit_module
from gp3d.train import train
from tests.helpers import TINY, compose_train


def test_injected_nan_rolls_back_and_the_run_finishes(tmp_path, monkeypatch):
    calls = []
    real = lit_module.generator_loss

    def nan_at_step_5(logits):
        calls.append(1)
        loss = real(logits)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(lit_module, "generator_loss", nan_at_step_5)
    cfg = compose_train(
        [
            "experiment=smoke",
            *TINY,
            "data.use_embeddings=false",
            "model.kd_dim=0",
            "model.total_kimg=0.032",
            "callbacks.checkpoint.every_kimg=0.008",
            "callbacks.rollback.check_every=1",
            "callbacks.rollback.lr_factor=0.5",
        ],
        tmp_path,
        tmp_path / "data",
    )
    out = train(cfg)
    lit, trainer = out["model"], out["trainer"]
    assert lit.nimg.item() == 32  # finished
    assert len(calls) == 9  # 8 steps + the one redone after the rollback
    assert all(torch.isfinite(p).all() for p in lit.parameters())
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.5 * cfg.model.module.g_optimizer.lr
    with open(tmp_path / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    events = [r for r in rows if r.get("rollback/count")]
    assert len(events) == 1
    assert float(events[0]["rollback/from_kimg"]) == 0.02
    assert float(events[0]["rollback/to_kimg"]) == 0.016
