"""FIR resampling and resampling convolutions in plain PyTorch (spec section 12).

Replaces StyleGAN's upfirdn2d / conv2d_resample custom ops with depthwise ``conv2d`` /
``conv_transpose2d``. Only native ops are used, so double backward (R1, spec 7.1) works.

Conventions: the FIR filter is the separable outer product of ``taps`` (default [1, 3, 3, 1]),
normalised to unit DC gain; upsampling multiplies it by 4 so a constant image keeps its value.
Filters are symmetric, so correlation (what conv2d computes) equals convolution.
Resampling is centred: a pixel-centre grid maps onto itself (out[2i] = (3 x[i] + x[i-1]) / 4 etc.).

Own code, not kornia: kornia's pyramid / resize ops use other kernels and padding, and the
networks must match StyleGAN's upfirdn2d (gain, pad, stride) to load the original's behaviour.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def fir_kernel(taps: Sequence[float] = (1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    """2-D FIR kernel [K, K]: outer product of ``taps`` normalised to sum 1 (even K only)."""
    t = torch.as_tensor(taps, dtype=torch.float32)
    if t.ndim != 1 or t.numel() % 2 != 0:
        raise ValueError("FIR taps must be a 1-D sequence of even length (centred 2x resampling)")
    k = torch.outer(t, t)
    return k / k.sum()


def _depthwise(kernel: torch.Tensor, channels: int, x: torch.Tensor, gain: float) -> torch.Tensor:
    return (kernel * gain).to(x.dtype)[None, None].expand(channels, 1, -1, -1)


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, pad: int, gain: float = 1.0) -> torch.Tensor:
    """Zero-pad every side by ``pad`` and filter each channel with ``kernel * gain``."""
    c = x.shape[1]
    return F.conv2d(F.pad(x, [pad] * 4), _depthwise(kernel, c, x, gain), groups=c)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, 2H, 2W]: zero insertion + FIR (gain 4), as one transposed conv."""
    c, k = x.shape[1], kernel.shape[-1]
    w = _depthwise(kernel, c, x, 4.0)
    return F.conv_transpose2d(x, w, stride=2, padding=(k - 2) // 2, groups=c)


def downsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H/2, W/2]: FIR then keep every second sample (one strided conv)."""
    c, k = x.shape[1], kernel.shape[-1]
    return F.conv2d(F.pad(x, [(k - 2) // 2] * 4), _depthwise(kernel, c, x, 1.0), stride=2, groups=c)


def conv2d_resample(
    x: torch.Tensor,
    weight: torch.Tensor,
    kernel: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    groups: int = 1,
) -> torch.Tensor:
    """'Same' convolution with an odd square ``weight`` [O, I/groups, k, k], optionally resampled.

    - up=2: transposed conv with stride 2 (the cheap side: conv runs at input resolution), then
      FIR (gain 4) = zero insertion -> FIR -> conv, so output is [.., 2H, 2W].
    - down=2: FIR then a stride-2 conv (conv runs at output resolution), output [.., H/2, W/2].
    Paddings are symmetric; derived so that the composite equals the centred FIR resample
    followed (up) or preceded (down) by a 'same' conv.
    """
    k = weight.shape[-1]
    if k % 2 != 1:
        raise ValueError("conv2d_resample expects an odd kernel size")
    if up == 1 and down == 1:
        return F.conv2d(x, weight, padding=k // 2, groups=groups)
    if kernel is None:
        raise ValueError("resampling needs a FIR kernel")
    fw = kernel.shape[-1]
    if up == 2 and down == 1:
        o, i = weight.shape[:2]
        # conv_transpose2d wants [groups * I, O / groups, k, k] and applies the kernel flipped.
        w = weight.flip([2, 3]).reshape(groups, o // groups, i, k, k).transpose(1, 2)
        x = F.conv_transpose2d(x, w.reshape(groups * i, o // groups, k, k), stride=2, groups=groups)
        return fir_filter(x, kernel, pad=(fw + 1 - k) // 2, gain=4.0)
    if down == 2 and up == 1:
        if k == 1:  # 1x1 conv commutes with the depthwise FIR: filter at the low resolution
            return F.conv2d(downsample2d(x, kernel), weight, groups=groups)
        x = fir_filter(x, kernel, pad=(fw + k - 3) // 2)
        return F.conv2d(x, weight, stride=2, groups=groups)
    raise ValueError(f"unsupported resampling up={up}, down={down} (only one of them may be 2)")
