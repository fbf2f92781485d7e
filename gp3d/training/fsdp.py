"""Fully sharded data parallel (FSDP2 ``fully_shard``) for alternating G / D / R1 phases.

:class:`GP3DFSDPStrategy` is Lightning's ``ModelParallelStrategy`` set up for pure data
parallelism (every process one shard of the data-parallel mesh, no tensor parallelism) and full
checkpoints gathered on rank 0 (so a checkpoint is one ordinary file, written through the
trainer's atomic CheckpointIO, and loads anywhere). ``GP3DLitModule.configure_model`` calls
:func:`shard_networks`: each trained part of G (mapping, synthesis, decoder, camera generator,
...) and each block of D becomes one FSDP2 unit, so weights, gradients and Adam states are split
over the ranks and a unit is all-gathered only while it computes.

What changes in the phases (``lit_module.py``):
- gradients are reduce-scattered by FSDP in backward: they must not also go through
  ``ddp.all_reduce_grads`` (``is_sharded`` tells the two apart);
- a frozen network (D in the G phase, G in the D phase) needs nothing: FSDP2 copies each
  sharded parameter's ``requires_grad`` (set by ``toggle_optimizer``) to the gathered one at
  every all-gather (``FSDPParam.to_unsharded``), so no gradient is made for it;
- a double backward (R1 through D, the camera generator's Lipschitz penalty) runs under
  :func:`double_backward_safe`: by default FSDP frees the gathered weights after the first
  (``create_graph``) backward, and the second then fails with "The tensor has a non-zero number
  of elements, but its data is not allocated yet";
- the EMA generator stays a full replica on every rank, updated from G gathered by
  :func:`gathered` (one all-gather of G per step, the same traffic as one forward): sampling
  callbacks run G_ema on rank 0 alone (samples, video) or for uneven per-rank counts (FID), and
  a sharded G_ema's forward is a collective that would deadlock there. Its memory is one fp32 G
  per rank, small next to the sharded Adam state it sits beside (README, "FSDP or DDP").
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from gp3d.training.ddp import broadcast_module


class GP3DFSDPStrategy(ModelParallelStrategy):
    """Lightning's FSDP2 strategy as gp3d uses it: all processes form one data-parallel mesh
    dimension (``tensor_parallel_size`` 1), and checkpoints are full state dicts gathered on
    rank 0 (``save_distributed_checkpoint=True`` writes a folder of shards instead).

    Needs a LightningModule whose ``configure_model`` shards its networks
    (``GP3DLitModule`` does, through :func:`shard_networks`)."""

    strategy_name = "gp3d_fsdp"

    def __init__(
        self,
        save_distributed_checkpoint: bool = False,
        process_group_backend: str | None = None,
        timeout: timedelta = timedelta(minutes=30),
    ) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )

    def setup_environment(self) -> None:
        # "auto" would mean one data-parallel group per node and tensor parallelism inside it
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()


def is_sharded(module: nn.Module) -> bool:
    """Whether ``module`` holds FSDP-sharded (DTensor) parameters."""
    return any(isinstance(p, DTensor) for p in module.parameters())


def replicated(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    """The parameters FSDP does not shard (all of them without FSDP): their gradients need the
    DDP-style all-reduce, and an optimiser keeps them in a parameter group of their own (Adam's
    foreach kernels refuse a list that mixes DTensors and plain tensors)."""
    return [p for p in params if not isinstance(p, DTensor)]


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor; a plain tensor as it is."""
    return t.to_local() if isinstance(t, DTensor) else t


def fsdp_units(module: nn.Module | None) -> list[FSDPModule]:
    return [m for m in module.modules() if isinstance(m, FSDPModule)] if module else []


def shard_network(net: nn.Module, units: list[nn.Module], mesh: DeviceMesh) -> None:
    """Make each of ``units`` (submodules of ``net`` entered through their ``forward``) one FSDP2
    unit. Weights are broadcast from rank 0 first: ``fully_shard`` keeps each rank's own slice of
    its local tensor, so differently initialised ranks would silently train a chimera."""
    covered = {id(p) for u in units for p in u.parameters()}
    stray = [n for n, p in net.named_parameters() if id(p) not in covered]
    if stray:
        raise ValueError(
            f"{type(net).__name__} has parameters outside its FSDP units ({stray[:3]}...): "
            "add their module to gp3d.training.fsdp.shard_networks"
        )
    broadcast_module(net)
    for unit in units:
        _shard(unit, mesh)


def _shard(unit: nn.Module, mesh: DeviceMesh) -> None:
    # fully_shard refuses 0-dim parameters (``_fsdp_init._verify_managed_param``: "fully_shard
    # doesn't support scalar parameters"); gp3d has a few (synthesis noise strengths, the depth
    # adaptor's near-plane offset). They stay plain replicated tensors whose gradients
    # ``GP3DLitModule._step`` all-reduces like DDP does, rather than changing the checkpoint
    # format to 1-element tensors.
    scalars = {p for p in unit.parameters() if p.dim() == 0}
    fully_shard(unit, mesh=mesh, ignored_params=scalars or None)


def units_of(net: nn.Module) -> list[nn.Module]:
    """A network's FSDP units, innermost first: each of its ``blocks`` (synthesis and D keep
    their resolution blocks in a ModuleDict), then the network itself for the rest. Per-block
    units bound the transient all-gathered memory to about one block's weights."""
    blocks = getattr(net, "blocks", None)
    inner = list(blocks.values() if isinstance(blocks, nn.ModuleDict) else blocks or [])
    return [m for m in inner if _has_params(m)] + [net]


def shard_networks(G: nn.Module, D: nn.Module, mesh: DeviceMesh) -> None:
    """FSDP2 units for gp3d's networks. G is never called as a whole in training (the step calls
    ``G.map``, ``G.synthesis``, ``G.render``, the camera generator), so its root gets no unit:
    each child with parameters (mapping, synthesis, decoder, camera generator, depth adaptor)
    is one, the synthesis network per block. D runs as a whole: per block, then the root with
    the rest (epilogue, heads, the patch-parameter encoder)."""
    parts = [m for m in G.children() if _has_params(m)]
    shard_network(G, [u for part in parts for u in units_of(part)], mesh)
    shard_network(D, units_of(D), mesh)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


@contextmanager
def double_backward_safe(module: nn.Module | None) -> Iterator[None]:
    """Keep ``module``'s gathered weights alive across every backward inside the block (a
    ``create_graph`` gradient, then the loss's backward through it), and free them on exit,
    before the optimiser step changes the shards (a still-gathered unit would not re-gather
    and would compute with stale weights). No-op for an unsharded module."""
    units = fsdp_units(module)
    for u in units:
        u.set_reshard_after_backward(False)
    try:
        yield
    finally:
        for u in units:
            u.reshard()
            u.set_reshard_after_backward(True)


@contextmanager
def gathered(module: nn.Module) -> Iterator[None]:
    """Inside the block ``module.parameters()`` are the full, gathered weights (same names and
    order as unsharded); collective: every rank must enter. No-op for an unsharded module."""
    units = fsdp_units(module)
    for u in units:
        u.unshard()
    try:
        yield
    finally:
        for u in units:
            u.reshard()


def load_full_state(module: nn.Module, optimizers: list, checkpoint: dict) -> None:
    """Load a full (gathered) checkpoint's weights and optimiser states into a sharded module
    and its optimisers, with the helpers ``GP3DFSDPStrategy`` resumes with (``load_state_dict``
    cannot copy full tensors into DTensor shards). Collective: every rank must call it."""
    from lightning.fabric.strategies.model_parallel import (
        _load_raw_module_state,
        _rekey_optimizer_state_if_needed,
    )
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    _load_raw_module_state(checkpoint["state_dict"], module)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    for opt, state in zip(optimizers, checkpoint["optimizer_states"], strict=True):
        state = _rekey_optimizer_state_if_needed(state, module)
        set_optimizer_state_dict(module, opt, optim_state_dict=state, options=options)


def any_rank(flag: torch.Tensor) -> torch.Tensor:
    """The maximum of a 0-dim flag over all processes (a NaN in one rank's gradient shard must
    skip the step on every rank: the shards belong to one optimiser step)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag
