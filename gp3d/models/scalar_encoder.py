"""Encoding of D's patch parameters (s, o_x, o_y) (spec 6.2)."""

import math

import torch
from torch import nn

# Fourier frequencies are pi * 2^k / 1024, k = 0..num_freqs-1 (1024: the power of two above the
# default x_multiplier of 1000, so the slowest frequency has a half-period covering [0, 1]).
FOURIER_PERIOD = 1024.0


class ScalarEncoder1d(nn.Module):
    """Each scalar v in [0, 1] -> [sin(w u), cos(w u), E[round(u)]] with u = x_multiplier * v.

    Per scalar: 2 * num_freqs Fourier features plus a learned ``const_emb_dim`` embedding from a
    single table shared by all coordinates; 20 + 256 = 276 dims, 828 for (s, o_x, o_y).

    Args:
        coord_dim: number of scalars per sample (3).
        x_multiplier: scale of u and the embedding table size minus one (1000 -> 1001 rows).
        const_emb_dim: learned embedding size (256).
        num_freqs: log-spaced Fourier frequencies (10).
    """

    def __init__(
        self,
        coord_dim: int = 3,
        x_multiplier: int = 1000,
        const_emb_dim: int = 256,
        num_freqs: int = 10,
    ) -> None:
        super().__init__()
        self.coord_dim, self.x_multiplier = coord_dim, x_multiplier
        freqs = math.pi * 2.0 ** torch.arange(num_freqs, dtype=torch.float32) / FOURIER_PERIOD
        self.register_buffer("freqs", freqs, persistent=False)
        self.embedding = nn.Embedding(x_multiplier + 1, const_emb_dim)
        self.dim_per_coord = 2 * num_freqs + const_emb_dim
        self.out_dim = coord_dim * self.dim_per_coord

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, coord_dim] in [0, 1] -> [B, coord_dim * dim_per_coord] (coordinate-major)."""
        if x.dim() != 2 or x.shape[1] != self.coord_dim:
            raise ValueError(f"expected [B, {self.coord_dim}] scalars, got {list(x.shape)}")
        u = x.float() * self.x_multiplier
        phase = u[..., None] * self.freqs  # [B, D, F]
        idx = u.round().long().clamp(0, self.x_multiplier)
        feats = torch.cat([phase.sin(), phase.cos(), self.embedding(idx)], dim=2)
        return feats.flatten(1)
