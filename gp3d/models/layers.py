"""Pure-PyTorch StyleGAN2 building blocks (no custom CUDA ops; spec section 12).

Equalized learning rate: weights are stored as N(0, 1/lr_multiplier^2) and scaled at run time by
lr_multiplier / sqrt(fan_in), so Adam's effective step for a layer is lr * lr_multiplier.
Contents: activations, 2nd-moment normalisation, FC and conv layers, modulated conv,
minibatch-std. FIR resampling lives in gp3d.models.fir.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from gp3d.models.fir import conv2d_resample, fir_kernel

LRELU_SLOPE = 0.2
ACT_GAINS = {"linear": 1.0, "lrelu": math.sqrt(2.0), "softplus": 1.0, "relu": math.sqrt(2.0)}


def activate(
    x: torch.Tensor, activation: str, gain: float = 1.0, clamp: float | None = None
) -> torch.Tensor:
    """Activation times its default gain (and an extra ``gain``), optionally clamped (bias_act)."""
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif activation == "softplus":
        x = F.softplus(x)
    elif activation == "relu":
        x = F.relu(x)
    elif activation != "linear":
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACT_GAINS)}")
    gain = ACT_GAINS[activation] * gain
    if gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) along ``dim`` (spec 1.1)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnected(nn.Module):
    """Equalized-lr linear layer followed by an activation."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias: bool = True,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in ACT_GAINS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {sorted(ACT_GAINS)}"
            )
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        return activate(F.linear(x, w, b), self.activation)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, act={self.activation}"


class Conv2dLayer(nn.Module):
    """Equalized-lr 'same' conv + bias + activation, optionally up/down-sampling by 2 (FIR).

    Args:
        kernel_size: odd kernel size.
        activation: see :func:`activate`; its default gain is applied (lrelu: sqrt(2)).
        up / down: 2 for FIR-resampled convolution ([1, 3, 3, 1] by default, spec 1.2 / 6.3).
        gain: extra output gain (sqrt(0.5) for the ResNet D's residual paths, spec 6.3).
        conv_clamp: clamp the output to +-conv_clamp * gain (None = off; G and our D are fp32).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        gain: float = 1.0,
        conv_clamp: float | None = None,
        lr_multiplier: float = 1.0,
        fir_taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0),
    ) -> None:
        super().__init__()
        if activation not in ACT_GAINS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {sorted(ACT_GAINS)}"
            )
        self.activation, self.up, self.down = activation, up, down
        self.gain, self.conv_clamp = gain, conv_clamp
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.randn(shape) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_channels * kernel_size**2)
        self.bias_gain = lr_multiplier
        # Non-persistent: moves with .to() but stays out of checkpoints.
        self.register_buffer("fir", fir_kernel(fir_taps), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = conv2d_resample(x, self.weight * self.weight_gain, self.fir, self.up, self.down)
        if self.bias is not None:
            x = x + (self.bias * self.bias_gain).view(1, -1, 1, 1)
        clamp = self.conv_clamp * self.gain if self.conv_clamp is not None else None
        return activate(x, self.activation, gain=self.gain, clamp=clamp)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"in={i}, out={o}, k={k}, act={self.activation}, up={self.up}, down={self.down}"


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: int = 1,
    fir: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """StyleGAN2 modulated conv as one grouped conv over the batch (spec 1.2, section 12).

    Args:
        x: [B, I, H, W] input.
        weight: [O, I, k, k] shared weight (unscaled; any fan-in gain goes into ``styles``).
        styles: [B, I] per-sample input-channel scales.
        demodulate: rescale each output filter of each sample to unit L2 norm.
        up: 1, or 2 to upsample with the FIR ``fir`` kernel.

    Returns:
        [B, O, H * up, W * up].
    """
    b, i, h, w_ = x.shape
    o, _, k, _ = weight.shape
    w = weight[None] * styles[:, None, :, None, None]  # [B, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + eps).rsqrt()
    y = conv2d_resample(x.reshape(1, b * i, h, w_), w.reshape(b * o, i, k, k), fir, up=up, groups=b)
    return y.reshape(b, o, y.shape[2], y.shape[3])


def minibatch_std(x: torch.Tensor, group_size: int = 4, num_channels: int = 1) -> torch.Tensor:
    """Append ``num_channels`` minibatch-stddev feature maps (spec 6.4).

    Samples are grouped with a *stride* (sample n is in group n mod B/G, as the original does;
    spec P7). G = min(group_size, B) and, when B is not divisible by it, the largest divisor of
    B below it (B prime -> G = 1, whose std is 0: a constant channel), so any batch works.
    """
    b, c, h, w = x.shape
    g = min(group_size, b)
    while b % g:
        g -= 1
    f = num_channels
    y = x.reshape(g, b // g, f, c // f, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over each group
    y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # [B/G, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)
