"""PTI losses (spec multiview_pti 1.5): LPIPS + L2 reconstruction, a scale-and-shift invariant
depth term, and the locality regulariser's latent-ball point."""

import torch
from torch import nn


def reconstruction(
    pred: torch.Tensor,
    target: torch.Tensor,
    lpips: nn.Module,
    lpips_weight: float = 1.0,
    l2_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """{"loss", "lpips", "l2"} for images [1, 3, H, W] in [-1, 1]; L2 is the per-pixel mean
    squared error (PTI's ``l2_loss``), LPIPS the mean distance."""
    d = lpips(pred, target).mean()
    l2 = (pred - target).square().mean()
    return {"loss": lpips_weight * d + l2_weight * l2, "lpips": d, "l2": l2}


def depth_alignment_loss(
    pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Scale-and-shift invariant L2 between a rendered depth and a target depth [B, 1, H, W].

    The target may be in any units affinely related to depth (metric, or the data's monocular
    LeReS depth normalised as raw / 65536 * 2 - 1, which is only known up to scale and shift,
    spec 3dgp 5.1), with larger = farther. The render is mapped onto the target by the least
    squares (a, b) of a * pred + b ~ target (closed form, differentiable), and the residual is
    divided by the target's variance so the weight does not depend on the units. A constant
    render scores 1; a perfect shape 0.
    """
    p = pred.flatten(1)
    t = target.flatten(1).to(p)
    pc, tc = p - p.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    a = (pc * tc).sum(1, keepdim=True) / (pc.square().sum(1, keepdim=True) + eps)
    residual = (a * pc - tc).square().mean(1)
    return (residual / (tc.square().mean(1) + eps)).mean()


def locality_point(pivot: torch.Tensor, w: torch.Tensor, alpha: float) -> torch.Tensor:
    """PTI's latent-ball sample: the pivot moved a distance ``alpha`` towards a random w,
    ``pivot + alpha (w - pivot) / ||w - pivot||`` (norm over all layers), [1, num_ws, w_dim]."""
    direction = w - pivot
    return pivot + alpha * direction / direction.flatten().norm().clamp_min(1e-8)
