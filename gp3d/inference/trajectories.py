"""Camera trajectories for grids and videos (spec 8.4), around a base (mean) camera.

Every trajectory maps a base camera batch [B] to a list of T camera batches (one per frame), so
each sample follows the path around its own base camera (this also fixes the original's
``wiggle``, which broke for more than one sample). Offsets are in radians, fov in degrees.
Frames are clamped into the prior's box when ``bounds`` are given: the generator never saw
cameras outside it (the original does not clamp; with the default prior and the mean camera
only an extreme base camera is affected).
"""

import math
from collections.abc import Callable

import torch

from gp3d.types import CameraParams

YAW, PITCH, FOV = 0, 1, 4
Bounds = tuple[torch.Tensor, torch.Tensor]  # (lo [8], hi [8]) in CAMERA_FIELDS order


def mean_camera(prior, batch_size: int = 1, device: torch.device | str = "cpu") -> CameraParams:
    """The centre of the prior box: mid yaw/pitch/fov, prior radius, look-at at the origin."""
    lo, hi = (b.to(device) for b in prior.bounds())
    mid = (lo + hi) / 2
    cam = mid[None].repeat(batch_size, 1)
    cam[:, 2] = 0.0  # roll
    cam[:, 5:] = 0.0  # look-at at the origin
    return CameraParams.from_tensor(cam)


@torch.no_grad()
def posterior_mean_camera(
    G, c: torch.Tensor | None, num_samples: int = 1024, seed: int = 0
) -> CameraParams:
    """The inference base camera (spec 8.4, ``use_mean_camera``): per row of ``c`` [B, c_dim]
    (or once, for an unconditional G: pass c=None and get a batch of 1), the mean of
    ``num_samples`` posterior cameras (prior -> camera generator, random z). The look-at is
    averaged in its (yaw, pitch, radius) parameterisation, not as a 3-D point, as the original
    does. Without a camera generator the posterior is the prior."""
    device = G.camera_prior.device
    rows = [None] if c is None else list(c.to(device))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    means = []
    for row in rows:
        prior = G.camera_prior.sample(num_samples, generator=gen, device="cpu").to(device)
        z = torch.randn(num_samples, G.z_dim, generator=gen).to(device)
        cc = None if row is None else row[None].expand(num_samples, -1)
        cam = G.cameras(z, cc, prior=prior)
        means.append(cam.to_tensor().mean(dim=0))
    return CameraParams.from_tensor(torch.stack(means))


def _frames(base: CameraParams, values: list[dict[int, float]], absolute: bool, bounds):
    out = []
    for v in values:
        x = base.to_tensor().clone()
        for field, value in v.items():
            x[:, field] = value if absolute else x[:, field] + value
        if bounds is not None:
            lo, hi = (b.to(x) for b in bounds)
            x = torch.maximum(torch.minimum(x, hi), lo)
        out.append(CameraParams.from_tensor(x))
    return out


def front_circle(
    base: CameraParams,
    num_frames: int = 64,
    yaw_amp: float = 0.5,
    pitch_amp: float = 0.3,
    fov_amp: float = 1.0,
    bounds: Bounds | None = None,
) -> list[CameraParams]:
    """yaw + 0.5 sin(2 pi t), pitch + 0.3 cos(2 pi t), fov + 1.0 sin(2 pi t), t in [0, 1] (64
    frames at inference, 32 in training videos)."""
    ts = torch.linspace(0.0, 1.0, num_frames).tolist()
    s = [math.sin(2 * math.pi * t) for t in ts]
    c = [math.cos(2 * math.pi * t) for t in ts]
    values = [{YAW: yaw_amp * si, PITCH: pitch_amp * ci, FOV: fov_amp * si} for si, ci in zip(s, c)]
    return _frames(base, values, absolute=False, bounds=bounds)


def points(
    base: CameraParams,
    yaw_offsets: tuple[float, ...] = (-0.5, 0.0, 0.5),
    pitch_offset: float = 0.0,
    bounds: Bounds | None = None,
) -> list[CameraParams]:
    """One frame per yaw offset, at a common pitch offset (tiled horizontally in grids)."""
    values = [{YAW: float(y), PITCH: pitch_offset} for y in yaw_offsets]
    return _frames(base, values, absolute=False, bounds=bounds)


def yaw_offsets(base: CameraParams, offsets: list[float]) -> list[CameraParams]:
    """One camera per yaw offset (the training sample grid's columns)."""
    return points(base, tuple(offsets))


def point(
    base: CameraParams,
    yaw: float = 0.0,
    pitch: float = 0.0,
    fov: float = 0.0,
    bounds: Bounds | None = None,
) -> list[CameraParams]:
    """A single view, offset from the base camera by (yaw, pitch, fov)."""
    return _frames(base, [{YAW: yaw, PITCH: pitch, FOV: fov}], absolute=False, bounds=bounds)


def line(
    base: CameraParams,
    num_frames: int = 16,
    yaw_min: float = -1.57,
    yaw_max: float = 1.57,
    pitch: float = 1.57,
    fov: float | None = None,
    bounds: Bounds | None = None,
) -> list[CameraParams]:
    """Yaw swept linearly over [yaw_min, yaw_max] at a fixed pitch (absolute angles); fov is the
    base camera's, or ``fov`` when given."""
    values = []
    for y in torch.linspace(yaw_min, yaw_max, num_frames).tolist():
        v = {YAW: y, PITCH: pitch}
        if fov is not None:
            v[FOV] = fov
        values.append(v)
    return _frames(base, values, absolute=True, bounds=bounds)


def wiggle(
    base: CameraParams,
    num_frames: int = 16,
    yaw_min: float = -1.57,
    yaw_max: float = 1.57,
    pitch_amp: float = 0.5,
    bounds: Bounds | None = None,
) -> list[CameraParams]:
    """Yaw swept over [yaw_min, yaw_max] with pitch = pi/2 + 0.5 cos(2 pi t) (absolute)."""
    ts = torch.linspace(0.0, 1.0, num_frames).tolist()
    ys = torch.linspace(yaw_min, yaw_max, num_frames).tolist()
    values = [
        {YAW: y, PITCH: math.pi / 2 + pitch_amp * math.cos(2 * math.pi * t)} for y, t in zip(ys, ts)
    ]
    return _frames(base, values, absolute=True, bounds=bounds)


TRAJECTORIES: dict[str, Callable[..., list[CameraParams]]] = {
    "front_circle": front_circle,
    "points": points,
    "point": point,
    "line": line,
    "wiggle": wiggle,
}
