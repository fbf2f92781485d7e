"""Non-Flatness Score (NFS): how much depth variety a generator's geometry has (spec 8.2).

Per image: clamp the metric depth to [near, far], take a ``num_bins``-bin histogram over
[near, far] (``torch.histc``), p = counts / sum, H = -sum p log(p + 1e-12) (natural log) and
NFS = exp(H). It lies in [1, num_bins]: 1 is perfectly flat (all depth in one bin).

Only the histogram step lives here. The protocol around it (256 G_ema samples, frontal prior
angles passed through the camera generator, 256^2 depth, 32 + 32 ray steps, densities below the
per-chunk median zeroed with ``cut_quantile = 0.5``) is the caller's. P16: that quantile is taken
per render chunk, so the score depends on the chunk size; published numbers used
2^24 // (batch * num_ray_steps * 3) rays per chunk.
"""

import torch

ENTROPY_EPS = 1e-12


def depth_histograms(
    depth: torch.Tensor, near: float, far: float, num_bins: int = 64
) -> torch.Tensor:
    """Per-image pixel counts [B, num_bins] of the depth clamped to [near, far] (the NFS input)."""
    flat = depth.detach().reshape(depth.shape[0], -1).float().clamp(near, far)
    return torch.stack([torch.histc(d, bins=num_bins, min=near, max=far) for d in flat])


def non_flatness_score(
    depth: torch.Tensor, near: float, far: float, num_bins: int = 64
) -> torch.Tensor:
    """Per-image NFS [B] of metric depth maps [B, 1, H, W] or [B, H, W]; the histograms it
    uses are :func:`depth_histograms`."""
    counts = depth_histograms(depth, near, far, num_bins)
    p = counts / counts.sum(dim=1, keepdim=True)
    entropy = -(p * torch.log(p + ENTROPY_EPS)).sum(dim=1)
    return entropy.exp()


def mean_non_flatness_score(
    depth: torch.Tensor, near: float, far: float, num_bins: int = 64
) -> float:
    """The reported metric: the mean of :func:`non_flatness_score` over images."""
    return non_flatness_score(depth, near, far, num_bins).mean().item()
