"""StyleGAN2 mapping network: (z, c) -> w (spec 1.1); also D's conditioning mapper (spec 6.2, 6.4)."""

import torch
from torch import nn

from gp3d.models.layers import FullyConnected, normalize_2nd_moment


class MappingNetwork(nn.Module):
    """Normalised z (and embedded, normalised c) through an lrelu MLP of width ``w_dim``.

    Args:
        z_dim: latent size; 0 for a pure conditioning mapper (D's hyper-mod / projection head).
        c_dim: conditioning size (one-hot class, or D's patch embedding); 0 = unconditional.
            c goes through a linear FC(c_dim -> w_dim, lr multiplier 1) and 2nd-moment
            normalisation before being concatenated to the normalised z.
        w_dim: output (and hidden) width.
        num_ws: number of broadcast copies of w. ``None`` or 0 returns a plain [B, w_dim] (the
            discriminator's use); otherwise [B, num_ws, w_dim].
        num_layers: number of lrelu FC layers (2 in 3DGP, 8 in StyleGAN2).
        lr_multiplier: equalized-lr multiplier of those layers (0.01).
        w_avg_beta: decay of the running mean ``w_avg``; ``None`` disables tracking (and
            truncation), as D's mappers do.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 2,
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.998,
    ) -> None:
        super().__init__()
        if z_dim == 0 and c_dim == 0:
            raise ValueError("MappingNetwork needs z_dim > 0 or c_dim > 0")
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.num_ws = num_ws or None
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnected(c_dim, w_dim) if c_dim > 0 else None
        widths = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        self.layers = nn.Sequential(
            *[
                FullyConnected(i, o, activation="lrelu", lr_multiplier=lr_multiplier)
                for i, o in zip(widths[:-1], widths[1:])
            ]
        )
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        update_emas: bool = False,
        w_mean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Map a batch.

        Args:
            z: [B, z_dim] (ignored / may be None when z_dim == 0).
            c: [B, c_dim] float conditioning (required when c_dim > 0).
            truncation_psi: w <- w_avg + psi (w - w_avg); 1 disables it.
            update_emas: update ``w_avg`` with this batch's mean w (before truncation).
            w_mean: [B, w_dim] truncation centre per sample (e.g. the class-wise mean w of
                spec 8.3) instead of ``w_avg``.

        Returns:
            [B, num_ws, w_dim], or [B, w_dim] when ``num_ws`` is None.
        """
        parts = []
        if self.z_dim > 0:
            if z is None:
                raise ValueError("z is required when z_dim > 0")
            parts.append(normalize_2nd_moment(z))
        if self.embed is not None:
            if c is None:
                raise ValueError("c is required when c_dim > 0")
            parts.append(normalize_2nd_moment(self.embed(c.to(self.embed.weight.dtype))))
        w = self.layers(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])

        if update_emas:
            if self.w_avg_beta is None:
                raise RuntimeError("update_emas needs w_avg tracking (w_avg_beta is None)")
            # float(): under bf16 autocast w is bf16 while the tracked mean stays float32
            self.w_avg.copy_(w.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1.0:
            if w_mean is None and self.w_avg_beta is None:
                raise RuntimeError("truncation needs w_avg tracking (w_avg_beta is None)")
            center = self.w_avg if w_mean is None else w_mean.to(w)
            w = center.lerp(w, truncation_psi)
        if self.num_ws is not None:
            w = w[:, None].expand(-1, self.num_ws, -1)
        return w

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"
