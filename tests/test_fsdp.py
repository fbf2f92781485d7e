"""FSDP2 (``fully_shard``) phases in 2 real gloo processes on CPU, with gp3d's helpers
(``gp3d.training.fsdp``): each phase's reduce-scattered gradient shards, gathered, equal the
single-process gradient of the whole batch; a frozen network gets no gradient; R1's double
backward through a sharded D works and is right; the replicated EMA copy updated from the
gathered G equals the single-process EMA; weights start as rank 0's."""

import copy
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import init_device_mesh

from gp3d.training.ddp import all_reduce_grads
from gp3d.training.ema import ema_update, make_ema_copy
from gp3d.training.fsdp import (
    double_backward_safe,
    gathered,
    is_sharded,
    local,
    replicated,
    shard_network,
    shard_networks,
)
from gp3d.training.losses import r1_penalty
from tests.net import free_port


class _G(nn.Module):
    """Shaped like gp3d's Generator for sharding: no parameters of its own, parts called
    directly (never G.forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.mapping = nn.Linear(4, 8 * 4 * 4)
        self.synthesis = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.LeakyReLU(0.2))
        self.decoder = nn.Conv2d(6, 3, 1)
        self.decoder.gain = nn.Parameter(torch.tensor(1.5))  # 0-dim: FSDP leaves it replicated

    def render(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.synthesis(self.mapping(z).view(-1, 8, 4, 4))) * self.decoder.gain


class _D(nn.Module):
    """Shaped like gp3d's Discriminator: ``blocks`` (a ModuleDict) plus an epilogue."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict(
            {"b4": nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.Softplus()), "b2": nn.Conv2d(5, 7, 2, stride=2)}
        )  # fmt: skip
        self.out = nn.Linear(7 * 2 * 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return self.out(x.flatten(1))[:, 0]


def _nets(seed: int) -> tuple[_G, _D]:
    torch.manual_seed(seed)
    return _G(), _D()


def _phases(G, D, z: torch.Tensor, real: torch.Tensor, sharded: bool) -> dict:
    """One G step's gradient, one D step's gradient, one R1 gradient (D frozen / G frozen as
    toggle_optimizer does), then EMA from G; gradients returned as full tensors."""

    def full(t):
        return t.full_tensor() if hasattr(t, "full_tensor") else t

    def grads(net):
        all_reduce_grads(replicated(net.parameters()))  # as GP3DLitModule._step does
        return {
            n: None if p.grad is None else full(p.grad).clone() for n, p in net.named_parameters()
        }

    out = {}
    D.requires_grad_(False)
    F.softplus(-D(G.render(z))).mean().backward()
    out["g_grad"], out["d_grad_in_g_phase"] = grads(G), grads(D)
    G.zero_grad(set_to_none=True)
    D.requires_grad_(True)
    G.requires_grad_(False)
    with torch.no_grad():
        fake = G.render(z)
    (F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()).backward()
    out["d_grad"], out["g_grad_in_d_phase"] = grads(D), grads(G)
    D.zero_grad(set_to_none=True)
    x = real.detach().requires_grad_(True)
    with double_backward_safe(D if sharded else None):
        logits = D(x)  # "+ 0 * logits" as GP3DLitModule._r1_step: every D weight gets a grad
        (r1_penalty(logits, x, gamma=1.0) + 0.0 * logits.sum()).backward()
    out["r1_grad"] = grads(D)
    G.requires_grad_(True)
    ema = make_ema_copy(_nets(seed=7)[0])  # a different start: the update must reach every weight
    with gathered(G):
        ema_update(ema, G, beta=0.25)
    out["ema"] = copy.deepcopy(ema.state_dict())
    with gathered(G):
        out["g"] = {n: p.detach().clone() for n, p in G.named_parameters()}
    return out


def _worker(rank: int, world: int, port: int, z, real, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        G, D = _nets(seed=100 + rank)  # different inits: rank 0's must win
        shard_networks(G, D, mesh)
        half = z.shape[0] // world
        rows = slice(rank * half, (rank + 1) * half)
        res = _phases(G, D, z[rows], real[rows], sharded=True)
        res["sharded"] = is_sharded(G) and is_sharded(D)
        res["local_numel"] = sum(local(p).numel() for p in D.parameters())
        out[rank] = res
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks():
    torch.manual_seed(0)
    z, real = torch.randn(8, 4), torch.randn(8, 3, 4, 4)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, free_port(), z, real, out), nprocs=2, join=True)
        return dict(out), _phases(*_nets(seed=100), z, real, sharded=False)


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        # mean of two half-batch means vs the full-batch mean: only fp32 rounding differs
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-7, msg=name)


def test_networks_are_really_sharded(two_ranks):
    out, _ = two_ranks
    total = sum(p.numel() for p in _nets(seed=0)[1].parameters())
    assert out[0]["sharded"] and out[1]["sharded"]
    assert out[0]["local_numel"] + out[1]["local_numel"] == total  # each rank holds a part


@pytest.mark.parametrize("phase", ["g_grad", "d_grad", "r1_grad"])
def test_phase_gradients_equal_the_whole_batch_gradient(two_ranks, phase):
    out, ref = two_ranks
    assert all(g is not None for g in ref[phase].values())
    _close(out[0][phase], ref[phase])
    _close(out[1][phase], ref[phase])


def test_frozen_network_gets_no_gradient(two_ranks):
    out, _ = two_ranks
    for rank in (0, 1):
        assert all(g is None for g in out[rank]["d_grad_in_g_phase"].values())
        assert all(g is None for g in out[rank]["g_grad_in_d_phase"].values())


def test_replicated_ema_and_weights(two_ranks):
    out, ref = two_ranks
    for rank in (0, 1):
        _close(out[rank]["g"], ref["g"])  # rank 0's initial weights on both (broadcast)
        _close(out[rank]["ema"], ref["ema"])
    assert all(torch.equal(out[0]["ema"][k], out[1]["ema"][k]) for k in ref["ema"])


def test_strays_outside_units_are_refused():
    class Loose(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))
            self.net = nn.Linear(2, 2)

    with pytest.raises(ValueError, match="outside its FSDP units"):
        shard_network(Loose(), [Loose().net], mesh=None)  # checked before any collective
