"""Camera trajectories for grids and videos (spec 8.4), around a base (mean) camera."""

import math

import torch

from gp3d.types import CameraParams


def mean_camera(prior, batch_size: int = 1, device: torch.device | str = "cpu") -> CameraParams:
    """The centre of the prior box: mid yaw/pitch/fov, prior radius, look-at at the origin."""
    lo, hi = (b.to(device) for b in prior.bounds())
    mid = (lo + hi) / 2
    cam = mid[None].repeat(batch_size, 1)
    cam[:, 2] = 0.0  # roll
    cam[:, 5:] = 0.0  # look-at at the origin
    return CameraParams.from_tensor(cam)


def front_circle(
    base: CameraParams,
    num_frames: int = 32,
    yaw_amp: float = 0.5,
    pitch_amp: float = 0.3,
    fov_amp: float = 1.0,
) -> list[CameraParams]:
    """yaw + 0.5 sin(2 pi t), pitch + 0.3 cos(2 pi t), fov + 1.0 sin(2 pi t), t in [0, 1]."""
    frames = []
    for t in torch.linspace(0.0, 1.0, num_frames).tolist():
        x = base.to_tensor().clone()
        x[:, 0] += yaw_amp * math.sin(2 * math.pi * t)
        x[:, 1] += pitch_amp * math.cos(2 * math.pi * t)
        x[:, 4] += fov_amp * math.sin(2 * math.pi * t)
        frames.append(CameraParams.from_tensor(x))
    return frames


def yaw_offsets(base: CameraParams, offsets: list[float]) -> list[CameraParams]:
    """One camera per yaw offset (the "points" trajectory)."""
    out = []
    for off in offsets:
        x = base.to_tensor().clone()
        x[:, 0] += off
        out.append(CameraParams.from_tensor(x))
    return out
