"""PhaseDDPStrategy's collectives in 2 real gloo processes: gradients averaged per phase equal the
single-process gradient of the whole batch; only the stepped network is synchronised; logged
scalars are averaged; the module is broadcast from rank 0."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gp3d.training.ddp import all_reduce_grads, broadcast_module, mean_over_ranks
from tests.net import free_port


def _nets(seed: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)), nn.Linear(3, 1)


def _loss(g: nn.Module, d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.softplus(-d(g(x))).mean()


def _worker(rank: int, world: int, port: int, x: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        g, d = _nets(seed=100 + rank)  # different inits: the broadcast must make them equal
        broadcast_module(g)
        broadcast_module(d)
        d.requires_grad_(False)  # the G phase: D frozen, as toggle_optimizer does
        half = x.shape[0] // world
        _loss(g, d, x[rank * half : (rank + 1) * half]).backward()
        all_reduce_grads(g.parameters())
        all_reduce_grads(d.parameters())  # D has no grads this phase: nothing to reduce
        logs = mean_over_ranks({"a": torch.tensor(float(rank)), "b": torch.tensor(2.0 * rank)})
        out[rank] = {
            "g": {n: p.detach().clone() for n, p in g.named_parameters()},
            "grad": {n: p.grad.clone() for n, p in g.named_parameters()},
            "d_grad": [p.grad for p in d.parameters()],
            "logs": {k: float(v) for k, v in logs.items()},
        }
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks():
    torch.manual_seed(0)
    x = torch.randn(8, 5)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, free_port(), x, out), nprocs=2, join=True)
        return x, dict(out)


def test_broadcast_makes_weights_identical(two_ranks):
    _, out = two_ranks
    g0 = _nets(seed=100)[0]  # rank 0's init wins
    for name, p in g0.named_parameters():
        assert torch.equal(out[0]["g"][name], p.detach())
        assert torch.equal(out[1]["g"][name], p.detach())


def test_averaged_gradients_equal_the_whole_batch_gradient(two_ranks):
    x, out = two_ranks
    g, d = _nets(seed=100)
    d.requires_grad_(False)
    _loss(g, d, x).backward()
    for name, p in g.named_parameters():
        assert torch.equal(out[0]["grad"][name], out[1]["grad"][name])  # bit-identical on ranks
        # mean of two half-batch means == the full-batch mean; only float rounding differs
        torch.testing.assert_close(out[0]["grad"][name], p.grad, rtol=1e-6, atol=1e-7)


def test_frozen_network_is_not_synchronised(two_ranks):
    _, out = two_ranks
    assert all(gr is None for gr in out[0]["d_grad"])


def test_logged_scalars_are_rank_means(two_ranks):
    _, out = two_ranks
    assert out[0]["logs"] == out[1]["logs"] == {"a": 0.5, "b": 1.0}


def test_single_process_is_a_no_op():
    g, _ = _nets(seed=0)
    _loss(g, nn.Identity(), torch.randn(4, 5)).backward()
    before = [p.grad.clone() for p in g.parameters()]
    all_reduce_grads(g.parameters())
    assert all(torch.equal(a, p.grad) for a, p in zip(before, g.parameters()))
    logs = {"x": torch.tensor(3.0)}
    assert mean_over_ranks(logs) is logs
