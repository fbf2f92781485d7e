"""A simulated monocular depth estimator for the synthetic dataset (stand-in for LeReS, spec 5.1).

Real training data comes with relative depth from a monocular network: a monotonic but unknown
function of true depth, smooth at edges, noisy, with its scale and shift normalised away per
image. The depth adaptor (spec 5.2) exists to bridge exactly that gap, so the synthetic data
gives it the same kind of signal instead of the ground truth.
"""

import math

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d


def _random_monotone_curve(x: torch.Tensor, g: torch.Generator, segments: int = 6) -> torch.Tensor:
    """Per-image random increasing piecewise-linear map of [0, 1] onto [0, 1], then a gamma."""
    b = x.shape[0]
    inc = torch.rand(b, segments, generator=g) + 0.25  # slopes within a factor ~5 of each other
    inc = inc / inc.sum(1, keepdim=True)
    knots = torch.cat([torch.zeros(b, 1), inc.cumsum(1)], 1)  # [B, K + 1], 0 -> 1
    pos = x.flatten(1) * segments
    i = pos.floor().clamp(0, segments - 1).long()
    y = knots.gather(1, i) + inc.gather(1, i) * (pos - i)
    gamma = torch.exp(torch.empty(b, 1).uniform_(-0.5, 0.5, generator=g))
    return y.clamp(min=0).pow(gamma).reshape(x.shape)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur over +-max(1, ceil(2 sigma)) pixels, edges replicated (kornia)."""
    size = 2 * max(1, math.ceil(2 * sigma)) + 1
    return gaussian_blur2d(x, (size, size), (sigma, sigma), border_type="replicate")


def simulate_monocular_depth(
    depth: torch.Tensor,
    generator: torch.Generator,
    near: float = 0.75,
    far: float = 1.25,
    noise_std: float = 0.005,
    field_amplitude: tuple[float, float] = (0.005, 0.02),
    blur_sigma: float = 0.6,
) -> torch.Tensor:
    """Distort metric depth ``[B, 1, H, W]`` (CPU) into a relative estimate in (0, 1].

    Steps: normalise to [0, 1] over [near, far]; a random monotone curve per image; a smooth
    low-frequency error field (amplitude 0.005-0.02) and pixel noise; a Gaussian blur (estimators
    are soft at edges); per-image min/max normalisation onto [shift, 1] with a random
    shift in [0.1, 0.5] (relative depth has no known offset). Larger means farther and the
    per-image maximum is exactly 1, ready for ``common.encode_relative_depth``.
    """
    b, _, h, w = depth.shape
    g = generator
    x = ((depth.float() - near) / (far - near)).clamp(0, 1)
    y = _random_monotone_curve(x, g)
    field = F.interpolate(torch.randn(b, 1, 4, 4, generator=g), size=(h, w), mode="bicubic")
    amp = torch.empty(b, 1, 1, 1).uniform_(*field_amplitude, generator=g)
    y = y + amp * field + noise_std * torch.randn(b, 1, h, w, generator=g)
    y = _gaussian_blur(y, blur_sigma)
    lo = y.amin(dim=(1, 2, 3), keepdim=True)
    hi = y.amax(dim=(1, 2, 3), keepdim=True)
    y = (y - lo) / (hi - lo).clamp(min=1e-6)
    shift = torch.empty(b, 1, 1, 1).uniform_(0.1, 0.5, generator=g)
    return shift + (1 - shift) * y
