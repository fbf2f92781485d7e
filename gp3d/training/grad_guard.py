"""Non-finite gradients skip their optimizer step, are counted, and hand over to the divergence
rollback after K consecutive skips (issue 15 item 3), all without a host read.

The original replaces NaN by 0 and +-inf by +-1e5 element-wise after its all-reduce (spec 7.2),
so one overflowing element still updates the network with a clipped, meaningless gradient. Here
a phase whose gradient holds any NaN / Inf gets an all-zero gradient instead. With the spec's
Adam betas (0, 0.99) the first moment is the gradient itself, so a zero gradient moves no
parameter: the step is skipped (only Adam's second moment decays by beta2 and its step count
advances). With beta1 > 0 the momentum would still move the parameters.

Deciding on the host would block on the GPU three times a step; the flag, the counters and the
streak stay device tensors that are logged like the losses, and ``callbacks.rollback`` reads
the streak at its own checks (``max_grad_skips``).
"""

from collections.abc import Callable

import torch

Reduce = Callable[[torch.Tensor], torch.Tensor]


def zero_if_nonfinite_(grads: list[torch.Tensor], reduce: Reduce | None = None) -> torch.Tensor:
    """Zero every gradient in ``grads`` in place when any element of any of them is NaN / Inf;
    return that verdict as a 0-dim float tensor (1.0 = zeroed) on their device. ``reduce``
    combines the verdicts of processes that each hold a shard of the gradients (FSDP,
    ``fsdp.any_rank``), so they all skip the step together."""
    bad = torch.zeros(())
    if grads:  # max |g| per tensor: NaN and Inf propagate, and unlike a 2-norm it cannot overflow
        peaks = torch.stack([p.float() for p in torch._foreach_norm(grads, float("inf"))])
        bad = (~torch.isfinite(peaks).all()).float()
    if reduce is not None:  # also with no local gradient: every rank joins the collective
        bad = reduce(bad)
    if not grads:
        return bad
    for g in grads:
        torch.nan_to_num_(g, nan=0.0, posinf=0.0, neginf=0.0)  # NaN * 0 would stay NaN
    torch._foreach_mul_(grads, 1.0 - bad)
    return bad


def next_streak(streak: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """Consecutive skipped steps after one more step: +1 when skipped, back to 0 otherwise."""
    return (streak + 1.0) * bad


class GradGuard:
    """Skip counters per network (``"G"``, ``"D"``; D's R1 steps count as D steps)."""

    def __init__(self) -> None:
        self.skips: dict[str, torch.Tensor] = {}
        self.streak: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, grads: list[torch.Tensor], reduce: Reduce | None = None) -> None:
        bad = zero_if_nonfinite_(grads, reduce)
        self.skips[name] = self.skips.get(name, torch.zeros_like(bad)) + bad
        self.streak[name] = next_streak(self.streak.get(name, torch.zeros_like(bad)), bad)

    def logs(self) -> dict[str, torch.Tensor]:
        """``train/grad_skips_<net>`` (skipped steps since the module was built) and
        ``train/grad_skip_streak`` (the longest current run of skipped steps of any network)."""
        out = {f"train/grad_skips_{n}": v for n, v in self.skips.items()}
        if self.streak:
            out["train/grad_skip_streak"] = torch.stack(list(self.streak.values())).max()
        return out
