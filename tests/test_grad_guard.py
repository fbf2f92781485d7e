"""Non-finite gradients: the step is skipped (parameters untouched), counted, and K consecutive
skips hand over to the divergence rollback (issue 15 item 3)."""

import csv

import pytest
import torch

import gp3d.training.lit_module as lit_module
from gp3d.train import train
from gp3d.training.grad_guard import GradGuard, next_streak, zero_if_nonfinite_
from tests.helpers import TINY, compose_train


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf")])
def test_one_nonfinite_element_zeroes_every_gradient_of_the_phase(poison):
    grads = [torch.randn(3, 4), torch.randn(5)]
    grads[1][2] = poison
    bad = zero_if_nonfinite_(grads)
    assert bad.item() == 1.0 and bad.dim() == 0
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_finite_gradients_pass_bit_for_bit_even_when_huge():
    grads = [torch.randn(3, 4) * 1e30, torch.randn(7)]  # a 2-norm of these would overflow
    before = [g.clone() for g in grads]
    assert zero_if_nonfinite_(grads).item() == 0.0
    assert all(torch.equal(a, b) for a, b in zip(grads, before))


def test_streak_counts_consecutive_skips_and_resets():
    guard, seq = GradGuard(), [1, 1, 0, 1, 1, 1]
    streaks = []
    for b in seq:
        g = torch.ones(2)
        g[0] = float("nan") if b else 1.0
        guard("G", [g])
        streaks.append(guard.logs()["train/grad_skip_streak"].item())
    assert streaks == [1, 2, 0, 1, 2, 3]
    assert guard.logs()["train/grad_skips_G"].item() == 5
    assert next_streak(torch.tensor(4.0), torch.tensor(0.0)).item() == 0


def test_a_skipped_adam_step_leaves_the_parameters_untouched():
    """With the spec's betas (0, 0.99) a zeroed gradient moves nothing; a real one does."""
    w = torch.nn.Parameter(torch.randn(8))
    opt = torch.optim.Adam([w], lr=0.1, betas=(0.0, 0.99), eps=1e-8)
    for _ in range(3):  # some optimiser state first
        w.grad = torch.randn(8)
        opt.step()
    before = w.detach().clone()
    w.grad = torch.randn(8)
    w.grad[0] = float("nan")
    zero_if_nonfinite_([w.grad])
    opt.step()
    assert torch.equal(w.detach(), before)
    w.grad = torch.randn(8)
    opt.step()
    assert not torch.equal(w.detach(), before)


@pytest.mark.slow  # a real training run: ~50-90 s on the shared 2-core machine
def test_consecutive_nonfinite_gradients_roll_back_and_the_run_finishes(tmp_path, monkeypatch):
    """G's loss stays finite but its gradient is NaN on calls 3-6: four skipped G steps in a row,
    then the rollback (max_grad_skips=4) takes the run back; it finishes with finite weights."""
    calls = []
    real = lit_module.generator_loss

    def nan_grads(logits):
        calls.append(1)
        loss = real(logits)
        if 3 <= len(calls) <= 6:  # d sqrt(x)/dx = inf at x = 0, times 0: NaN, value 0
            loss = loss + torch.sqrt(0.0 * logits.sum())
        return loss

    monkeypatch.setattr(lit_module, "generator_loss", nan_grads)
    cfg = compose_train(
        [
            "experiment=smoke", *TINY, "data.use_embeddings=false", "model.kd_dim=0",
            "model.total_kimg=0.032", "callbacks.checkpoint.every_kimg=0.008",
            "callbacks.rollback.check_every=1", "callbacks.rollback.max_grad_skips=4",
            "trainer.log_every_n_steps=1",
        ],
        tmp_path,
        tmp_path / "data",
    )  # fmt: skip
    out = train(cfg)
    lit = out["model"]
    assert lit.nimg.item() == 32  # finished
    assert all(torch.isfinite(p).all() for p in lit.parameters())
    with open(tmp_path / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    skips = [float(r["train/grad_skips_G"]) for r in rows if r.get("train/grad_skips_G")]
    assert max(skips) == 4 and skips[:2] == [0, 0]
    streaks = [float(r["train/grad_skip_streak"]) for r in rows if r.get("train/grad_skip_streak")]
    assert streaks[:6] == [0, 0, 1, 2, 3, 4]
    events = [r for r in rows if r.get("rollback/count")]
    assert len(events) == 1 and float(events[0]["rollback/from_kimg"]) == 0.024


def test_reduced_verdict_skips_a_step_that_was_bad_on_another_rank():
    # FSDP: each rank holds a shard; a NaN in another rank's shard must zero this rank's too
    seen = []

    def other_rank_bad(flag: torch.Tensor) -> torch.Tensor:
        seen.append(float(flag))
        return torch.ones(())

    g = torch.tensor([1.0, -2.0])
    assert zero_if_nonfinite_([g], other_rank_bad) == 1.0
    assert torch.equal(g, torch.zeros(2)) and seen == [0.0]
    # a rank with no gradient elements still joins the collective (else the others would hang)
    assert zero_if_nonfinite_([], other_rank_bad) == 1.0 and seen == [0.0, 0.0]
