"""The depth adaptor: maps rendered metric depth to what the discriminator sees as fake depth.

Spec 5.2. Rendered depth in [near, far] is first normalised to x0 in [-1, 1] with a learned
near-plane offset, then refined by a small conv net whose shared 1x1 head reads out a candidate
after every hidden layer. During training each sample randomly picks one of
[x0, head(h1), ..., head(hL)], so D sometimes sees non-adapted depth and the geometry cannot
hide behind the adaptor.

Selection (P2):
- ``p=None`` (default, the original code): the annealed (L+1)-way scheme. p_i = p0 + i*slope with
  slope = 2(1 - n p0) / (n (n - 1)), n = L + 1, p0 = (1/n)(1 - tau) + selection_start_p * tau,
  tau = clamp(kimg / anneal_kimg, 0, 1). With the defaults: (0.25,)*4 -> (0.1, 0.2, 0.3, 0.4).
- ``p`` in [0, 1] (the paper's description, an ablation knob): the last adapted output with
  probability p, otherwise x0. p = 0 never adapts (also at eval), p = 1 always does.
Eval uses the last output (x0 when p = 0).
"""

import torch
from torch import nn

from gp3d.models.layers import Conv2dLayer


class DepthAdaptor(nn.Module):
    """Rendered metric depth [B, 1, H, W] -> adapted depth [B, 1, H, W] in about [-1, 1]."""

    def __init__(
        self,
        near: float,
        far: float,
        num_hid_layers: int = 3,
        hid_dim: int = 64,
        kernel_size: int = 5,
        near_plane_offset_init: float = -3.0,
        near_plane_offset_max_fraction: float = 0.25,
        selection_start_p: float = 0.1,
        anneal_kimg: float = 10_000,
        p: float | None = None,
    ) -> None:
        super().__init__()
        if num_hid_layers < 1:
            raise ValueError("the depth adaptor needs at least one hidden layer")
        n = num_hid_layers + 1
        if not 0.0 <= selection_start_p <= 2.0 / n:  # keeps every p_i >= 0
            raise ValueError(
                f"selection_start_p must be in [0, {2.0 / n}], got {selection_start_p}"
            )
        if p is not None and not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1] or None, got {p}")
        self.near, self.far = float(near), float(far)
        self.max_offset = near_plane_offset_max_fraction * (self.far - self.near)
        self.selection_start_p, self.anneal_kimg, self.p = selection_start_p, anneal_kimg, p
        # Pre-sigmoid near-plane offset; sigmoid(-3) * 0.25 * 0.5 ~ 0.00593 at init (spec 14.1).
        self.near_plane_offset_raw = nn.Parameter(torch.tensor(float(near_plane_offset_init)))
        self.layers = nn.ModuleList(
            Conv2dLayer(1 if i == 0 else hid_dim, hid_dim, kernel_size, activation="lrelu")
            for i in range(num_hid_layers)
        )
        self.head = Conv2dLayer(hid_dim, 1, 1)  # shared by every hidden layer
        # Training progress; a buffer so that EMA copies and checkpoints carry it.
        self.register_buffer("kimg", torch.zeros(()))

    @property
    def num_outputs(self) -> int:
        return len(self.layers) + 1

    def set_kimg(self, kimg: float | torch.Tensor) -> None:
        self.kimg.fill_(float(kimg))

    def near_plane(self) -> torch.Tensor:
        """near' = near + sigmoid(raw) * max_fraction * (far - near)."""
        return self.near + torch.sigmoid(self.near_plane_offset_raw) * self.max_offset

    def normalize(self, depth: torch.Tensor) -> torch.Tensor:
        """The non-adapted depth x0: [near', far] -> [-1, 1] (spec 5.2). Also for logging."""
        near = self.near_plane().to(depth.dtype)
        mid = (self.far + near) / 2
        return 2 * (depth - mid) / (self.far - near + 1e-12)

    def candidates(self, depth: torch.Tensor) -> list[torch.Tensor]:
        """[x0, head(h1), ..., head(hL)], each [B, 1, H, W]."""
        x0 = self.normalize(depth)
        outs, h = [x0], x0
        for layer in self.layers:
            h = layer(h)
            outs.append(self.head(h))
        return outs

    def selection_probs(self) -> torch.Tensor:
        """[n] probability of each candidate at the current kimg, on the buffers' device. With
        ``p`` set only x0 (1 - p) and the last output (p) are non-zero."""
        n, kimg = self.num_outputs, self.kimg
        if self.p is not None:
            probs = torch.zeros(n, device=kimg.device, dtype=kimg.dtype)
            probs[0] += 1.0 - self.p
            probs[-1] += self.p
            return probs
        # Tensor maths on the buffer, so no host sync per step.
        if self.anneal_kimg > 0:
            tau = (kimg / self.anneal_kimg).clamp(0.0, 1.0)
        else:
            tau = torch.ones_like(kimg)
        p0 = (1.0 - tau) / n + self.selection_start_p * tau
        slope = 2.0 * (1.0 - n * p0) / (n * (n - 1))
        return p0 + slope * torch.arange(n, device=kimg.device, dtype=kimg.dtype)

    def sample_choice(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """[B] int64 candidate index per sample, drawn from :meth:`selection_probs`."""
        device = self.kimg.device if device is None else device
        cdf = self.selection_probs().cumsum(0).to(device)
        u = torch.rand(batch_size, device=device, dtype=cdf.dtype, generator=generator)
        # Index i such that cdf[i - 1] <= u < cdf[i] (cdf[-1] = 1 is implied).
        return torch.searchsorted(cdf[:-1].contiguous(), u, right=True)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.normalize(depth) if self.p == 0 else self.candidates(depth)[-1]
        idx = self.sample_choice(depth.shape[0], depth.device)
        # Index a stack of every candidate so all parameters stay in the graph (zero gradient
        # for unpicked ones), which DDP needs.
        stacked = torch.stack(self.candidates(depth), dim=1)  # [B, n, 1, H, W]
        return stacked[torch.arange(depth.shape[0], device=depth.device), idx]

    def extra_repr(self) -> str:
        return f"near={self.near}, far={self.far}, outputs={self.num_outputs}, p={self.p}"
