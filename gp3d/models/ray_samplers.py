"""Where along each ray the field is evaluated: stratified coarse samples and inverse-CDF fine samples.

Work happens in the normalised "s-space" [0, 1] with t = near + s (far - near) (spec 2.3, 2.4).
"""

import torch


def stratified_samples(
    shape: tuple[int, ...], num_samples: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Jittered s-values, [*shape, num_samples], sorted, in [0, 1].

    Start from evenly spaced s = linspace(0, 1, N) and jitter each uniformly between the midpoints
    of its neighbours (the first bin is [0, m_0], the last [m_{N-2}, 1]). Jitter is always on,
    also at eval, as in the original (spec 2.3, P15).
    """
    s = torch.linspace(0.0, 1.0, num_samples, device=device)
    mids = 0.5 * (s[1:] + s[:-1])
    lower = torch.cat([s[:1], mids])
    upper = torch.cat([mids, s[-1:]])
    u = torch.rand(*shape, num_samples, device=device)
    return lower + (upper - lower) * u


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Draw samples from the piecewise-constant pdf given by ``weights`` over ``bins``.

    Args:
        bins: [..., K + 1] sorted bin edges.
        weights: [..., K] non-negative weights (not necessarily normalised).
        num_samples: samples per ray, drawn with random u (det=False, spec 2.4).

    Returns:
        [..., num_samples] samples (unsorted), no gradient.
    """
    with torch.no_grad():
        pdf = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        cdf = torch.cat([torch.zeros_like(pdf[..., :1]), pdf.cumsum(dim=-1)], dim=-1)  # [..., K+1]
        cdf[..., -1] = 1.0
        u = torch.rand(*cdf.shape[:-1], num_samples, device=cdf.device, dtype=cdf.dtype)
        idx = torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True)
        lo = (idx - 1).clamp(0, cdf.shape[-1] - 1)
        hi = idx.clamp(0, cdf.shape[-1] - 1)
        cdf_lo, cdf_hi = cdf.gather(-1, lo), cdf.gather(-1, hi)
        bin_lo, bin_hi = bins.gather(-1, lo), bins.gather(-1, hi)
        denom = cdf_hi - cdf_lo
        frac = torch.where(
            denom < 1e-5, torch.zeros_like(denom), (u - cdf_lo) / denom.clamp_min(1e-5)
        )
        return bin_lo + frac * (bin_hi - bin_lo)
