"""Patch-conditioned ResNet discriminator with a KD head (spec 6).

A StyleGAN2 ResNet D built for ``img_resolution`` whose first log2(img / patch) blocks do not
downsample, so it runs on patch_resolution^2 inputs (EpiGRAF). The patch parameters (s, o_x, o_y)
condition it twice: hyper-modulation of each block's second conv input, and projection at the
head, together with the one-hot class when c_dim > 0.

Everything is fp32 here; mixed precision is the trainer's choice (spec 6.3 / 14 allow it).
"""

import math
from typing import NamedTuple

import torch
from torch import nn

from gp3d.models.layers import Conv2dLayer, FullyConnected, minibatch_std
from gp3d.models.mapping import MappingNetwork
from gp3d.models.scalar_encoder import ScalarEncoder1d

SQRT_HALF = math.sqrt(0.5)


class DiscriminatorOutput(NamedTuple):
    logits: torch.Tensor  # [B] real/fake score
    kd: torch.Tensor | None  # [B, kd_dim] teacher-feature prediction (spec 6.5)
    class_logits: torch.Tensor | None  # [B, c_dim] auxiliary classifier (class_head)


class DiscriminatorBlock(nn.Module):
    """ResNet block (spec 6.3): skip 1x1 (no bias) + conv0 3x3 -> [hyper-mod] -> conv1 3x3.

    Args:
        tmp_channels / out_channels: width inside / after the block.
        img_channels: > 0 only for the first block, which owns the fromRGB 1x1 conv. Later
            blocks get no fromRGB at all (the original builds unused ones: dead parameters).
        down: 1 or 2, applied to conv1 and skip.
        hyper_w_dim: > 0 adds FC(hyper_w_dim -> tmp, bias 0); conv1's input is scaled by
            1 + tanh(FC(h)) (spec 6.2).
        conv_clamp: optional activation clamp (the original uses 256 in its fp16 blocks).
    """

    def __init__(
        self,
        tmp_channels: int,
        out_channels: int,
        img_channels: int = 0,
        down: int = 2,
        hyper_w_dim: int = 0,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.fromrgb = (
            Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
            if img_channels > 0
            else None
        )
        self.skip = Conv2dLayer(
            tmp_channels, out_channels, 1, bias=False, down=down, gain=SQRT_HALF
        )
        self.conv0 = Conv2dLayer(
            tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            3,
            activation="lrelu",
            down=down,
            gain=SQRT_HALF,
            conv_clamp=conv_clamp,
        )
        self.hyper = FullyConnected(hyper_w_dim, tmp_channels) if hyper_w_dim > 0 else None

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        y = self.skip(x)
        x = self.conv0(x)
        if self.hyper is not None:
            x = x * (1.0 + torch.tanh(self.hyper(h)))[:, :, None, None]
        return self.conv1(x) + y


class Discriminator(nn.Module):
    """Spec 6: input [B, in_channels, P, P] -> (logits [B], KD prediction [B, kd_dim] or None).

    Args:
        img_resolution: dataset resolution the D is "built" for (256); fixes block count/widths.
        patch_resolution: input size P (64); log2(img / P) leading blocks keep the resolution.
        in_channels: 3 (RGB) or 4 (RGB-D).
        c_dim: classes for projection conditioning (0 = unconditional).
        channel_base / channel_max: width at virtual resolution r is min(channel_base // r,
            channel_max); a block at r has tmp = width(r), out = width(r / 2).
        mbstd_group_size / mbstd_num_channels: minibatch-std (see :func:`minibatch_std` for
            batches not divisible by the group size).
        hyper_mod: hyper-modulate conv1 inputs by the patch parameters (needs patch_cond).
        kd_dim: size of the KD head's output (2048 for ResNet-50 features; 0 = no head).
        patch_cond: condition on the patch parameters at all; False gives a plain (class-
            conditional if c_dim > 0) ResNet D, e.g. for ablations.
        hyper_w_dim: width of the hyper-modulation mapper's output h (512).
        conv_clamp: optional clamp of conv outputs (None: fp32, no clamping).
        class_head: an auxiliary classifier head (c_dim logits) beside the KD head, for the
            AC-GAN-style class loss (``GP3DLitModule.class_weight``); not in 3DGP. It gives G a
            direct, class-specific gradient, which the projection term alone gives too weakly in
            short runs (README, CPU recipe).
    """

    def __init__(
        self,
        img_resolution: int,
        patch_resolution: int,
        in_channels: int = 3,
        c_dim: int = 0,
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        hyper_mod: bool = True,
        kd_dim: int = 0,
        patch_cond: bool = True,
        hyper_w_dim: int = 512,
        conv_clamp: float | None = None,
        class_head: bool = False,
    ) -> None:
        super().__init__()
        if class_head and c_dim == 0:
            raise ValueError("class_head needs a class-conditional discriminator (c_dim > 0)")
        self.img_resolution, self.patch_resolution = img_resolution, patch_resolution
        self.in_channels, self.c_dim, self.kd_dim = in_channels, c_dim, kd_dim
        self.patch_cond, self.hyper_mod = patch_cond, hyper_mod and patch_cond
        self.mbstd_group_size, self.mbstd_num_channels = mbstd_group_size, mbstd_num_channels

        self.scalar_enc = ScalarEncoder1d(coord_dim=3) if patch_cond else None
        patch_dim = self.scalar_enc.out_dim if patch_cond else 0
        self.hyper_mapping = (
            MappingNetwork(0, patch_dim, hyper_w_dim, num_ws=None, w_avg_beta=None)
            if self.hyper_mod
            else None
        )

        self.block_table = self.channel_table(
            img_resolution, patch_resolution, channel_base, channel_max
        )
        self.blocks = nn.ModuleDict()
        for i, (res, tmp, out, down) in enumerate(self.block_table):
            self.blocks[f"b{res}"] = DiscriminatorBlock(
                tmp,
                out,
                img_channels=in_channels if i == 0 else 0,
                down=down,
                hyper_w_dim=hyper_w_dim if self.hyper_mod else 0,
                conv_clamp=conv_clamp,
            )

        # Epilogue at 4x4 (spec 6.4).
        ch = min(channel_base // 4, channel_max)
        cond_dim = c_dim + patch_dim
        self.cmap_dim = ch if cond_dim > 0 else 0
        self.epi_conv = Conv2dLayer(
            ch + mbstd_num_channels, ch, 3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.epi_fc = FullyConnected(ch * 16, ch, activation="lrelu")
        self.epi_out = FullyConnected(ch, self.cmap_dim or 1)
        self.head_mapping = (
            MappingNetwork(0, cond_dim, self.cmap_dim, num_ws=None, w_avg_beta=None)
            if cond_dim > 0
            else None
        )
        # KD head branches off the flattened epilogue conv output (spec 6.5).
        self.kd_head = (
            nn.Sequential(
                FullyConnected(ch * 16, ch, activation="lrelu"), FullyConnected(ch, kd_dim)
            )
            if kd_dim > 0
            else None
        )
        self.class_head = (
            nn.Sequential(
                FullyConnected(ch * 16, ch, activation="lrelu"), FullyConnected(ch, c_dim)
            )
            if class_head
            else None
        )

    @staticmethod
    def channel_table(
        img_resolution: int,
        patch_resolution: int,
        channel_base: int = 32768,
        channel_max: int = 512,
    ) -> list[tuple[int, int, int, int]]:
        """[(virtual resolution, tmp channels, out channels, down)] for each block (spec 6.3)."""
        log_img, log_patch = int(math.log2(img_resolution)), int(math.log2(patch_resolution))
        if 2**log_img != img_resolution or 2**log_patch != patch_resolution:
            raise ValueError("img_resolution and patch_resolution must be powers of two")
        if not 4 <= patch_resolution <= img_resolution or img_resolution < 8:
            raise ValueError(
                f"need 4 <= patch_resolution <= img_resolution and img_resolution >= 8, "
                f"got {patch_resolution}, {img_resolution}"
            )
        num_start = log_img - log_patch  # num_additional_start_blocks: no downsampling
        width = lambda r: min(channel_base // r, channel_max)  # noqa: E731
        resolutions = [2**i for i in range(log_img, 2, -1)]  # img_resolution ... 8
        return [
            (r, width(r), width(r // 2), 1 if i < num_start else 2)
            for i, r in enumerate(resolutions)
        ]

    def forward(
        self, x: torch.Tensor, patch: torch.Tensor | None = None, c: torch.Tensor | None = None
    ) -> "DiscriminatorOutput":
        """Score a batch of (patch) images.

        Args:
            x: [B, in_channels, P, P] in about [-1, 1].
            patch: [B, 3] = (scale, o_x, o_y) (``PatchParams.to_tensor()``); None means the full
                image (1, 0, 0). Ignored when patch_cond is False.
            c: [B, c_dim] one-hot class; required when c_dim > 0.

        Returns:
            logits [B], the KD feature prediction [B, kd_dim] and the auxiliary class logits
            [B, c_dim] (each None without its head).
        """
        if x.shape[1:] != (self.in_channels, self.patch_resolution, self.patch_resolution):
            raise ValueError(
                f"expected [B, {self.in_channels}, {self.patch_resolution}, {self.patch_resolution}], "
                f"got {list(x.shape)}"
            )
        cond = []
        if self.c_dim > 0:
            if c is None:
                raise ValueError("c is required when c_dim > 0")
            cond.append(c.to(x.dtype))
        h = None
        if self.patch_cond:
            if patch is None:
                patch = x.new_tensor([1.0, 0.0, 0.0]).expand(x.shape[0], 3)
            patch_emb = self.scalar_enc(patch).to(x.dtype)
            cond.append(patch_emb)
            if self.hyper_mapping is not None:
                h = self.hyper_mapping(None, patch_emb)

        for block in self.blocks.values():
            x = block(x, h)

        x = minibatch_std(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.epi_conv(x).flatten(1)
        kd = self.kd_head(x) if self.kd_head is not None else None
        cls = self.class_head(x) if self.class_head is not None else None
        out = self.epi_out(self.epi_fc(x))
        if self.head_mapping is None:
            return DiscriminatorOutput(out[:, 0], kd, cls)
        cmap = self.head_mapping(None, torch.cat(cond, dim=1))
        return DiscriminatorOutput((out * cmap).sum(dim=1) / math.sqrt(self.cmap_dim), kd, cls)
