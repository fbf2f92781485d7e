"""The few collectives metrics need; all are no-ops in a single process.

Tensors travel on the backend's device (CUDA for NCCL, CPU for gloo) and come back on the CPU.
"""

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _comm_device() -> torch.device:
    """Where collective buffers must live: NCCL only moves CUDA tensors (on this rank's current
    device, which Lightning sets), gloo only CPU ones. The backend decides, not a preference."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate [n_r, ...] tensors of every rank (n_r may differ) in rank order."""
    _, world = rank_and_world()
    if world == 1:
        return x
    dev = _comm_device()
    n = torch.tensor([x.shape[0]], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    padded = torch.zeros((max(sizes), *x.shape[1:]), dtype=x.dtype, device=dev)
    padded[: x.shape[0]] = x.to(dev)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s].cpu() for p, s in zip(parts, sizes)])


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a new CPU tensor; the input is left untouched)."""
    if rank_and_world()[1] == 1:
        return x.clone()
    y = x.to(_comm_device()).clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y.cpu()


def broadcast_value(value: float, src: int = 0) -> float:
    """Rank ``src``'s float on every rank (so decisions that depend on it agree exactly)."""
    if rank_and_world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.broadcast(t, src)
    return float(t.item())


def broadcast_tensor(x: torch.Tensor | None, src: int = 0) -> torch.Tensor:
    """Rank ``src``'s tensor (any shape and dtype; other ranks may pass None) on every rank."""
    if rank_and_world()[1] == 1:
        return x
    dev = _comm_device()
    is_src = dist.get_rank() == src
    dtypes = [torch.float64, torch.float32, torch.int64]
    header = torch.full((8,), -1, dtype=torch.int64, device=dev)
    if is_src:
        if x.ndim > 6:
            raise ValueError("broadcast_tensor supports at most 6 dimensions")
        header[0] = dtypes.index(x.dtype)
        header[1] = x.ndim
        header[2 : 2 + x.ndim] = torch.tensor(x.shape)
    dist.broadcast(header, src)
    shape = header[2 : 2 + int(header[1])].tolist()
    buf = (
        x.to(dev).contiguous()
        if is_src
        else torch.empty(shape, dtype=dtypes[header[0]], device=dev)
    )
    dist.broadcast(buf, src)
    return buf.cpu()


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()
