"""Patch-wise training (EpiGRAF, spec 2.6): patch parameters and real-image patch extraction."""

import torch
import torch.nn.functional as F

from gp3d.models.camera import pixel_grid
from gp3d.types import PatchParams


def sample_patch_params(
    batch_size: int,
    min_scale: float,
    max_scale: float = 1.0,
    beta: float = 0.8,
    group_size: int = 4,
    device: torch.device | str = "cpu",
) -> PatchParams:
    """Square patches with scale s = min + (max - min) u, u ~ Beta(1, beta), offsets ~ U[0, 1 - s].

    One draw is shared by each group of ``group_size`` consecutive samples, as in the original
    (it differs from the strided minibatch-std groups, spec P7). beta -> 0 puts all the mass at
    s = max_scale (whole image).
    """
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
    num_groups = -(-batch_size // group_size)
    # validate_args=False: no host-side checks of the parameters on every training step
    dist = torch.distributions.Beta(
        torch.tensor(1.0), torch.tensor(float(beta)), validate_args=False
    )
    u = dist.sample((num_groups,)).to(device)
    scale = min_scale + (max_scale - min_scale) * u
    offset = torch.rand(num_groups, 2, device=device) * (1.0 - scale[:, None])
    scale = scale.repeat_interleave(group_size)[:batch_size]
    offset = offset.repeat_interleave(group_size, dim=0)[:batch_size]
    return PatchParams(scale=scale, offset=offset)


def extract_patches(images: torch.Tensor, patch: PatchParams, resolution: int) -> torch.Tensor:
    """Resample the patches of full images that the renderer would draw for ``patch``.

    Bilinear ``grid_sample`` with ``align_corners=True`` (pixel centres at +-1, the renderer's
    convention) on [B, C, H, W] images; y is flipped because grid_sample's y points down. No
    anti-aliasing, as in the original (spec 2.6).
    """
    grid = pixel_grid(resolution, patch, device=images.device).to(images.dtype)  # [B, P*P, 2], y up
    grid = grid * grid.new_tensor([1.0, -1.0])
    grid = grid.reshape(images.shape[0], resolution, resolution, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
