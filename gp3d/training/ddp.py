"""Data-parallel training for alternating G / D / R1 phases, the StyleGAN2 way.

Lightning's DDP wraps the whole LightningModule in ``DistributedDataParallel``. With manual
optimisation that is a poor fit: each phase (G, D, lazy R1) backpropagates into one network while
the other is frozen, so the wrapper either needs ``find_unused_parameters=True`` (a graph traversal
every backward and a known source of wrong gradients when phases alternate) or hangs waiting for
gradients that never come. StyleGAN2-ADA's training loop instead keeps plain modules and, after
each phase's backward, all-reduces the gradients of the network that phase steps, and only those.

:class:`PhaseDDPStrategy` is Lightning's DDP strategy (process launch, torchrun / SLURM, samplers,
collectives, checkpoint rank logic) without the wrapper: the module is broadcast from rank 0 once
at set-up, and :func:`all_reduce_grads` is called by the LightningModule in each phase.
"""

from collections.abc import Iterable

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from torch import nn


def distributed_world() -> int:
    """Number of processes of the default group; 1 outside torch.distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_grads(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients of ``params`` over all processes, in one flat all-reduce.

    A parameter without a gradient on this rank contributes zeros (and gets the average), so every
    rank reduces the same tensor layout in the same order even when a branch was not used here.
    No-op in a single process. The flat buffer is the StyleGAN2-ADA approach: one collective per
    phase instead of one per tensor.
    """
    world = distributed_world()
    params = [p for p in params if p.requires_grad]
    if world == 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    for p, g in zip(params, flat.split([q.numel() for q in params])):
        p.grad = g.view_as(p).clone() if p.grad is None else p.grad.copy_(g.view_as(p))


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every process (what the DDP wrapper does at
    construction). No-op in a single process."""
    if distributed_world() == 1:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=src)


class PhaseDDPStrategy(DDPStrategy):
    """Lightning DDP without the ``DistributedDataParallel`` wrapper (see the module docstring).

    Use with a LightningModule that calls :func:`all_reduce_grads` before each optimiser step
    (``GP3DLitModule._step`` does). Weights start identical on every rank: they are broadcast
    from rank 0 when the strategy sets the model up.
    """

    strategy_name = "gp3d_phase_ddp"

    def _setup_model(self, model: nn.Module) -> nn.Module:  # type: ignore[override]
        broadcast_module(model)
        return model

    def _register_ddp_hooks(self) -> None:
        # communication hooks attach to a DistributedDataParallel wrapper; there is none
        return


def mean_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average a dict of scalar tensors over all processes in one collective (logged metrics are
    the global batch's, not rank 0's). The order of the keys must agree across ranks: every rank
    runs the same phases. No-op in a single process."""
    world = distributed_world()
    if world == 1 or not values:
        return values
    keys = sorted(values)
    flat = torch.stack([torch.as_tensor(values[k]).detach().float().reshape(()) for k in keys])
    dist.all_reduce(flat)
    flat /= world
    return dict(zip(keys, flat.unbind()))


def average_over_ranks_(tensors: Iterable[torch.Tensor]) -> None:
    """In place: replace each tensor by its mean over processes (one collective). For running
    statistics that each rank updates from its own samples (the mapping network's ``w_avg``):
    averaging linear EMA updates gives exactly the update from the global batch. No-op in one
    process."""
    tensors = list(tensors)
    if distributed_world() == 1 or not tensors:
        return
    flat = torch.cat([t.detach().flatten().float() for t in tensors])
    dist.all_reduce(flat)
    flat /= distributed_world()
    with torch.no_grad():
        for t, v in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(v.view_as(t))
