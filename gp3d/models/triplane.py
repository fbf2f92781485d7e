"""Tri-plane feature sampling and the small MLP decoder (spec 1.3)."""

import torch
import torch.nn.functional as F
from torch import nn

from gp3d.models.layers import FullyConnected

# Which world axes index (width, height) of each plane: plane 0 <- (x, y), 1 <- (x, z), 2 <- (y, z).
PLANE_AXES = ((0, 1), (0, 2), (1, 2))


def sample_triplane_features(
    planes: torch.Tensor, points: torch.Tensor, cube_scale: float = 0.5
) -> torch.Tensor:
    """Per-plane features [B, 3, M, C] at world points (planes in ``PLANE_AXES`` order), before
    :func:`sample_triplanes` averages them; for inspecting what each plane contributes."""
    b, n_planes, c, h, w = planes.shape
    coords = points / cube_scale
    grid = torch.stack([coords[..., list(ax)] for ax in PLANE_AXES], dim=1)  # [B, 3, M, 2]
    feats = F.grid_sample(
        planes.reshape(b * n_planes, c, h, w),
        grid.reshape(b * n_planes, 1, -1, 2).to(planes.dtype),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )  # [B*3, C, 1, M]
    return feats.reshape(b, n_planes, c, -1).transpose(2, 3)


def sample_triplanes(
    planes: torch.Tensor, points: torch.Tensor, cube_scale: float = 0.5
) -> torch.Tensor:
    """Bilinearly sample and average tri-plane features at world points.

    Args:
        planes: [B, 3, C, R, R] feature planes.
        points: [B, M, 3] world coordinates; the cube [-cube_scale, cube_scale]^3 maps to [-1, 1]^3.
        cube_scale: half side of the scene box (0.5 in 3DGP).

    Returns:
        [B, M, C] features, the **mean** over the three planes (not sum or concat). Outside the
        cube the features are zero (zero padding), as in the original.
    """
    return sample_triplane_features(planes, points, cube_scale).mean(dim=1)


class TriPlaneDecoder(nn.Module):
    """MLP from averaged plane features to raw RGB and raw density (spec 1.3).

    FC(C -> hidden, lrelu*sqrt2) ... FC(hidden -> 4, linear). RGB is *raw* (no sigmoid, the
    classical marcher composites it directly); density is pre-activation. No view direction.
    """

    def __init__(self, in_features: int = 32, hidden_dim: int = 64, num_layers: int = 2) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        dims = [in_features] + [hidden_dim] * (num_layers - 1) + [4]
        layers = [
            FullyConnected(
                dims[i], dims[i + 1], activation="lrelu" if i < num_layers - 1 else "linear"
            )
            for i in range(num_layers)
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[..., C] features -> (rgb [..., 3], raw density [..., 1])."""
        out = self.net(features)
        return out[..., :3], out[..., 3:]
