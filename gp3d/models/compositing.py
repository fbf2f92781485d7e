"""Alpha compositing of colour, depth and opacity along rays (spec 2.5)."""

import torch
import torch.nn.functional as F

INF_DELTA = (
    1e10  # the last sample absorbs all remaining transmittance: the far end is the background
)


def density_activation(raw: torch.Tensor, cut_quantile: float | None = None) -> torch.Tensor:
    """sigma = softplus(raw). With ``cut_quantile`` (NFS only, spec 8.2), densities below that
    quantile of the whole tensor are zeroed (the quantile is taken per render chunk, P16)."""
    sigma = F.softplus(raw)
    if cut_quantile is not None:
        flat = sigma.detach().flatten().float()
        if flat.numel() > 16_000_000:  # torch.quantile has an input-size limit; subsample
            flat = flat[torch.randperm(flat.numel(), device=flat.device)[:16_000_000]]
        threshold = torch.quantile(flat, cut_quantile).to(sigma.dtype)
        sigma = torch.where(sigma < threshold, torch.zeros_like(sigma), sigma)
    return sigma


def transmittance(sigma: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha and T [..., S] from density [..., S, 1] and sample positions d [..., S]:
    T_i = prod_{j<i} (1 - alpha_j + 1e-10), T_0 = 1, with an infinite last delta (spec 2.5)."""
    deltas = torch.cat([d[..., 1:] - d[..., :-1], torch.full_like(d[..., :1], INF_DELTA)], dim=-1)
    alpha = 1.0 - torch.exp(-sigma[..., 0] * deltas)
    trans = torch.cumprod(1.0 - alpha + 1e-10, dim=-1)
    return alpha, torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)


def composite(
    rgb: torch.Tensor, sigma: torch.Tensor, t: torch.Tensor, deltas_t: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Classical emission-absorption compositing.

    Args:
        rgb: [..., S, 3] per-sample colour (raw, not clamped).
        sigma: [..., S, 1] post-activation density.
        t: [..., S] sorted sample distances (metric).
        deltas_t: [..., S] distances used for the deltas, if not ``t`` (the coarse pass uses
            s-space distances, spec 2.4 / P4).

    Returns:
        rgb [..., 3], depth [..., 1], opacity [..., 1] and weights [..., S] (the transmittance itself: :func:`transmittance`). No division by the
        weight sum; with the infinite last delta the weights sum to ~1 (spec 2.5).
    """
    alpha, trans = transmittance(sigma, t if deltas_t is None else deltas_t)
    weights = alpha * trans
    rgb_out = (weights[..., None] * rgb).sum(dim=-2)
    depth = (weights * t).sum(dim=-1, keepdim=True)
    opacity = weights.sum(dim=-1, keepdim=True)
    return rgb_out, depth, opacity, weights
