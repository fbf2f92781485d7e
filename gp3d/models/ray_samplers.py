"""Where along each ray the field is evaluated: stratified coarse samples and inverse-CDF fine samples.

Work happens in the normalised "s-space" [0, 1] with t = near + s (far - near) (spec 2.3, 2.4).
"""

import torch

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, k: int) -> torch.Tensor:
    """(x * k) mod 2^32 for int64 x in [0, 2^32), in 16-bit halves so nothing overflows int64."""
    lo = (x & 0xFFFF) * k
    hi = (((x >> 16) * k) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xorshift-multiply, "lowbias32" constants)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def ray_uniforms(seed: int, stream: int, ray_ids: torch.Tensor, num: int) -> torch.Tensor:
    """Uniforms in (0, 1), [*ray_ids.shape, num], that are a pure function of
    (seed, stream, ray id, sample index): a counter-based hash, so a ray gets the same jitter
    whatever chunk it is rendered in, on any device (integer maths is exact)."""
    key = _mix32(torch.tensor((seed * 7919 + stream) & _MASK32, device=ray_ids.device))
    index = ray_ids.long()[..., None] * num + torch.arange(num, device=ray_ids.device)
    h = _mix32((index & _MASK32) ^ key)
    h = _mix32(h ^ (index >> 32))  # ids beyond 2^32 / num still get distinct values
    return ((h >> 8).float() + 0.5) * (1.0 / (1 << 24))


def stratified_samples(
    shape: tuple[int, ...],
    num_samples: int,
    device: torch.device | str = "cpu",
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """Jittered s-values, [*shape, num_samples], sorted, in [0, 1].

    Start from evenly spaced s = linspace(0, 1, N) and jitter each uniformly between the midpoints
    of its neighbours (the first bin is [0, m_0], the last [m_{N-2}, 1]). Jitter is always on,
    also at eval, as in the original (spec 2.3, P15). ``u`` [*shape, num_samples] replaces the
    global-RNG jitter (e.g. :func:`ray_uniforms` for chunk-independent renders).
    """
    s = torch.linspace(0.0, 1.0, num_samples, device=device)
    mids = 0.5 * (s[1:] + s[:-1])
    lower = torch.cat([s[:1], mids])
    upper = torch.cat([mids, s[-1:]])
    if u is None:
        u = torch.rand(*shape, num_samples, device=device)
    return lower + (upper - lower) * u


PDF_EPS = 1e-5  # the original's eps: added to the weights twice and used as the flat-bin test


def sample_pdf(
    bins: torch.Tensor,
    weights: torch.Tensor,
    num_samples: int,
    u: torch.Tensor | None = None,
    eps: float = PDF_EPS,
) -> torch.Tensor:
    """Draw samples from the piecewise-constant pdf given by ``weights`` over ``bins``.

    As EG3D's ``sample_pdf`` (used by 3DGP): ``eps`` is added to the weights before
    normalising, and a bin whose cdf step is below ``eps`` is treated as having step 1.

    Args:
        bins: [..., K + 1] sorted bin edges.
        weights: [..., K] non-negative weights (not necessarily normalised).
        num_samples: samples per ray, drawn with random u (det=False, spec 2.4).
        u: [..., num_samples] uniforms to use instead of the global RNG.
        eps: added to every weight; 0 samples the weights exactly (a zero total then gives nan).

    Returns:
        [..., num_samples] samples (unsorted), no gradient.
    """
    with torch.no_grad():
        weights = weights + eps
        pdf = weights / weights.sum(dim=-1, keepdim=True)
        cdf = torch.cat([torch.zeros_like(pdf[..., :1]), pdf.cumsum(dim=-1)], dim=-1)  # [..., K+1]
        if u is None:
            u = torch.rand(*cdf.shape[:-1], num_samples, device=cdf.device, dtype=cdf.dtype)
        u = u.to(cdf.dtype).contiguous()
        idx = torch.searchsorted(cdf.contiguous(), u, right=True)
        lo = (idx - 1).clamp(0, cdf.shape[-1] - 1)
        hi = idx.clamp(0, cdf.shape[-1] - 1)
        cdf_lo, cdf_hi = cdf.gather(-1, lo), cdf.gather(-1, hi)
        bin_lo, bin_hi = bins.gather(-1, lo), bins.gather(-1, hi)
        denom = cdf_hi - cdf_lo
        denom = torch.where(denom < eps, torch.ones_like(denom), denom)
        return bin_lo + (u - cdf_lo) / denom * (bin_hi - bin_lo)


def importance_samples(
    s_coarse: torch.Tensor, weights: torch.Tensor, num_samples: int, u: torch.Tensor | None = None
) -> torch.Tensor:
    """Fine s-samples [..., num_samples] from coarse s-samples and weights [..., N] (spec 2.4).

    The pdf lives on the N-2 intervals between the N-1 midpoints of the coarse samples and uses
    weights[1:-1]. The original adds 1e-5 here and :func:`sample_pdf` adds it again, so each
    weight gets 2e-5 in all; on sparse weights that moves fine samples noticeably.
    """
    mids = 0.5 * (s_coarse[..., 1:] + s_coarse[..., :-1])
    return sample_pdf(mids, weights[..., 1:-1].detach() + PDF_EPS, num_samples, u=u)
