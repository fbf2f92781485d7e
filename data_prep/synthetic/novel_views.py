"""Extra renders of each sample's scene from other true cameras: ground truth for novel views.

A held-out benchmark split (``gp3d.benchmark3d``) reconstructs a sample from its image and then
compares a render of the reconstruction from another camera with the dataset's own render of the
same scene from that camera. The novel cameras orbit the sample's camera: the same radius, fov
and look-at point, the yaw moved by up to ``max_yaw`` degrees and the pitch by up to a third of
it (clamped to the dataset's pitch range), so the novel view shows the same object from a nearby
angle, as single-view 3D benchmarks do.

They come from their own random stream (seeded by the shard seed and a salt), so adding novel
views never changes the base samples of a shard.
"""

import math

import numpy as np
import torch

from data_prep.synthetic.scenes import Scenes, render
from gp3d.types import CameraParams

_SALT = 0x9E3779B9  # separates the novel-view stream from the shard's own stream
PITCH_RANGE = (math.pi / 4, 3 * math.pi / 4)  # sample_cameras' default pitch range


def novel_view_seed(shard_seed: int) -> int:
    return int(np.random.SeedSequence([shard_seed, _SALT]).generate_state(1, np.uint64)[0] >> 1)


def orbit_cameras(
    base: CameraParams, k: int, generator: torch.Generator, max_yaw: float = 45.0
) -> CameraParams:
    """``k`` cameras per base camera (sample-major: row ``i * k + j`` is view ``j`` of sample
    ``i``): yaw + U(-max_yaw, max_yaw) degrees, pitch + U(-max_yaw/3, max_yaw/3) clamped to
    the dataset's pitch range; radius, fov, roll and look-at copied."""
    n = base.batch_size
    rep = base[torch.arange(n).repeat_interleave(k)]
    span = math.radians(max_yaw)
    d_yaw = (2 * torch.rand(n * k, generator=generator) - 1) * span
    d_pitch = (2 * torch.rand(n * k, generator=generator) - 1) * span / 3
    rep.yaw = rep.yaw + d_yaw
    rep.pitch = (rep.pitch + d_pitch).clamp(*PITCH_RANGE)
    return rep


def render_novel_views(
    scenes: Scenes,
    cams: CameraParams,
    k: int,
    shard_seed: int,
    resolution: int,
    max_yaw: float = 45.0,
    chunk: int = 64,
) -> tuple[np.ndarray, np.ndarray, CameraParams]:
    """Render ``k`` novel views of every scene: (rgb uint8 ``[B, k, H, W, 3]``, metric depth
    float16 ``[B, k, H, W]``, cameras ``[B * k]`` sample-major)."""
    g = torch.Generator().manual_seed(novel_view_seed(shard_seed))
    novel = orbit_cameras(cams, k, g, max_yaw)
    idx = torch.arange(scenes.batch_size).repeat_interleave(k)
    rgbs, depths = [], []
    for lo in range(0, idx.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        rgb, depth = render(scenes[idx[sl]], novel[sl], resolution)
        rgbs.append((rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1))
        depths.append(depth[:, 0].to(torch.float16))
    b, r = scenes.batch_size, resolution
    rgb8 = torch.cat(rgbs).reshape(b, k, r, r, 3).numpy()
    return rgb8, torch.cat(depths).reshape(b, k, r, r).numpy(), novel
