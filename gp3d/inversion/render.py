"""Differentiable renders for inversion: ws -> tri-planes -> image at the target resolution."""

import torch

from gp3d.models.camera import generate_rays
from gp3d.types import CameraParams, RenderOutput


def render_ws(
    G, ws: torch.Tensor, camera: CameraParams, resolution: int, seed: int | None = 0
) -> RenderOutput:
    """Render ws [B, num_ws, w_dim] from posterior cameras [B] (no camera generator) at
    ``resolution``^2 pixels with gradients. Synthesis noise is "const" (inference, spec 8.3) so
    the same ws always gives the same tri-planes; ``seed`` fixes the ray jitter."""
    planes = G.synthesis(ws, noise_mode="const")
    origins, dirs = generate_rays(camera, resolution)
    rgb, depth, opacity = G.renderer(G.field(planes), origins, dirs, seed=seed)

    def to_img(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], resolution, resolution)

    return RenderOutput(
        rgb=to_img(rgb), depth=to_img(depth), opacity=to_img(opacity), camera=camera
    )


def step_seed(seed: int, stage: int, step: int) -> int:
    """A different, reproducible ray jitter per step, so neither stage fits one fixed set of
    sample positions along the rays."""
    return (seed * 1_000_003 + stage * 100_003 + step) % (2**31)
