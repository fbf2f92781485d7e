"""Tri-plane synthesis: a StyleGAN2 "skip" generator without input (spec 1.2).

ws [B, num_ws, w_dim] -> tri-planes [B, 3, plane_channels, R, R]. Blocks run at 4, 8, ..., R; the
4x4 block starts from a learned constant and has one conv, every other block upsamples in its first
conv and has two. Each block's ToRGB ("to planes") output is added to the FIR-upsampled running
sum. Like StyleGAN2, a block's ToRGB shares its w with the next block's first conv, so
num_ws = 1 + 2 * (num_blocks - 1) + 1 (16 at R = 512).

``extra_blocks`` = k > 0 (the "strengthened backbone", multiview_pti.md 1.4) follows every
upsampling block with k blocks at the same resolution (two convs without upsampling and their own
ToRGB added to the running sum), so num_ws = 1 + 2 (num_blocks - 1)(1 + k) + 1.
"""

import math

import torch
from torch import nn

from gp3d.models.fir import fir_kernel, upsample2d
from gp3d.models.layers import FullyConnected, activate, modulated_conv2d

NOISE_MODES = ("random", "const", "none")


class SynthesisLayer(nn.Module):
    """Modulated + demodulated conv, per-pixel noise, bias, lrelu * sqrt(2) (spec 1.2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
    ) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)  # styles start at 1
        # No fan-in gain: demodulation normalises every filter anyway.
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_noise:
            # Persistent so that noise_mode="const" renders the same from a checkpoint.
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("fir", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = modulated_conv2d(
            x, self.weight, self.affine(w), demodulate=True, up=self.up, fir=self.fir
        )
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                r = self.resolution
                noise = torch.randn(x.shape[0], 1, r, r, device=x.device, dtype=x.dtype)
            else:
                noise = self.noise_const
            x = x + noise * self.noise_strength
        return activate(x + self.bias.view(1, -1, 1, 1), "lrelu")


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation (style scaled by 1 / sqrt(in)), then bias."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return x + self.bias.view(1, -1, 1, 1)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator; ``in_channels == 0`` makes the 4x4 constant block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        use_noise: bool = True,
        up: int = 2,
    ) -> None:
        super().__init__()
        self.up = up
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.conv0 = None
        else:
            self.const = None
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=up, use_noise=use_noise
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, use_noise=use_noise
        )
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1
        self.register_buffer("fir", fir_kernel(), persistent=False)

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws: [B, num_conv + num_torgb, w_dim]. Returns (features, accumulated image)."""
        w = ws.unbind(dim=1)
        if self.conv0 is None:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, w[0], noise_mode)
        x = self.conv1(x, w[self.num_conv - 1], noise_mode)
        y = self.torgb(x, w[self.num_conv])
        if img is not None and self.up > 1:
            img = upsample2d(img, self.fir)
        img = y if img is None else img + y
        return x, img


class TriPlaneSynthesis(nn.Module):
    """ws -> tri-planes [B, 3, plane_channels, R, R] (spec 1.2).

    Args:
        w_dim: style size.
        plane_resolution: R, a power of two >= 4 (512 in 3DGP).
        plane_channels: features per plane (32); the network emits 3 * plane_channels channels,
            channels [k * C, (k + 1) * C) forming plane k.
        channel_base / channel_max: channels at resolution r are min(channel_base // r, channel_max).
        use_noise: per-pixel noise inputs (on in 3DGP).
        extra_blocks: same-resolution blocks after each upsampling block (0 = 3DGP's network;
            their modules are named ``b{res}_x{i}``, so 0 keeps today's checkpoints loading).
    """

    def __init__(
        self,
        w_dim: int,
        plane_resolution: int,
        plane_channels: int = 32,
        channel_base: int = 32768,
        channel_max: int = 512,
        use_noise: bool = True,
        extra_blocks: int = 0,
    ) -> None:
        super().__init__()
        if extra_blocks < 0:
            raise ValueError(f"model.synthesis.extra_blocks must be >= 0, got {extra_blocks}")
        self.extra_blocks = extra_blocks
        self.w_dim, self.plane_resolution, self.plane_channels = (
            w_dim,
            plane_resolution,
            plane_channels,
        )
        channels = self.channel_table(plane_resolution, channel_base, channel_max)
        self.block_resolutions = list(channels)
        self.blocks = nn.ModuleDict()
        in_ch = 0
        for res, out_ch in channels.items():
            self.blocks[f"b{res}"] = SynthesisBlock(
                in_ch, out_ch, w_dim, res, 3 * plane_channels, use_noise=use_noise
            )
            for i in range(extra_blocks if in_ch > 0 else 0):  # none after the 4x4 const block
                self.blocks[f"b{res}_x{i}"] = SynthesisBlock(
                    out_ch, out_ch, w_dim, res, 3 * plane_channels, use_noise=use_noise, up=1
                )
            in_ch = out_ch
        self.num_ws = self.count_ws(plane_resolution, extra_blocks)

    @staticmethod
    def channel_table(
        plane_resolution: int, channel_base: int = 32768, channel_max: int = 512
    ) -> dict[int, int]:
        """{resolution: channels} for the blocks 4, 8, ..., plane_resolution (no network built)."""
        log2 = int(math.log2(plane_resolution))
        if plane_resolution < 4 or 2**log2 != plane_resolution:
            raise ValueError(
                f"plane_resolution must be a power of two >= 4, got {plane_resolution}"
            )
        return {2**i: min(channel_base // 2**i, channel_max) for i in range(2, log2 + 1)}

    @staticmethod
    def count_ws(plane_resolution: int, extra_blocks: int = 0) -> int:
        """Styles consumed: 1 conv at 4x4, 2 per other block and per extra block, plus the last
        ToRGB (16 at 512 without extra blocks)."""
        num_blocks = len(TriPlaneSynthesis.channel_table(plane_resolution))
        return 1 + 2 * (num_blocks - 1) * (1 + extra_blocks) + 1

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        """ws [B, num_ws, w_dim] -> planes [B, 3, plane_channels, R, R].

        noise_mode: "random" (training, FID), "const" (fixed per-layer noise: snapshots,
        videos, geometry) or "none".
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.dim() != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"expected ws [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        x = img = None
        idx = 0
        for block in self.blocks.values():
            x, img = block(x, img, ws[:, idx : idx + block.num_conv + block.num_torgb], noise_mode)
            idx += block.num_conv  # ToRGB shares its w with the next block's first conv
        r = self.plane_resolution
        return img.reshape(img.shape[0], 3, self.plane_channels, r, r)
