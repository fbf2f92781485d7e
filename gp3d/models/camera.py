"""Pure camera maths: the "Ball-in-Sphere" pose, intrinsics from the field of view, ray generation.

Conventions (shared/spec/3dgp.md 2.1, 3.2, 3.3), reproduced exactly so numbers are comparable
with the original implementation:
- point(yaw, pitch, r) = (r sin(pitch) sin(-yaw), r cos(pitch), r sin(pitch) cos(yaw)); y is up.
- cam2world columns are [-left, up, -forward] with left = normalize(up0 x forward); the camera
  looks down its -z axis (OpenGL). yaw=0, pitch=pi/2, look-at 0 gives the identity rotation.
- Pixel centres: x = linspace(-1, 1, W) left to right, y = linspace(+1, -1, H) top to bottom; the
  border *pixel centres* sit at +-1, so f_px = ((W - 1) / 2) / tan(fov / 2).
- A patch maps x -> (x + 1) s - 1 + 2 o_x (same for y, y up).
"""

import math

import torch
import torch.nn.functional as F

from gp3d.types import CameraParams, PatchParams

PITCH_EPS = 1e-5  # cam2world is degenerate at pitch 0 or pi (spec 3.3)


def spherical_to_cartesian(
    yaw: torch.Tensor, pitch: torch.Tensor, radius: torch.Tensor
) -> torch.Tensor:
    """Spec 3.2 spherical convention. Inputs [...]; output [..., 3]."""
    return torch.stack(
        [
            radius * torch.sin(pitch) * torch.sin(-yaw),
            radius * torch.cos(pitch),
            radius * torch.sin(pitch) * torch.cos(yaw),
        ],
        dim=-1,
    )


def camera_origin(cam: CameraParams) -> torch.Tensor:
    """[B, 3] camera positions."""
    return spherical_to_cartesian(cam.yaw, cam.pitch, cam.radius)


def look_at_point(cam: CameraParams) -> torch.Tensor:
    """[B, 3] look-at targets (a point inside the ball of radius la_radius)."""
    return spherical_to_cartesian(cam.la_yaw, cam.la_pitch, cam.la_radius)


def cam2world(cam: CameraParams) -> torch.Tensor:
    """[B, 4, 4] camera-to-world matrices (spec 3.3). Roll is ignored (always 0 in 3DGP)."""
    # Own code, not kornia's camera utilities: this is the original's axis construction (spec
    # 3.3); kornia's pinhole cameras follow OpenCV conventions, and a mismatch would flip renders.
    origin = camera_origin(cam)
    forward = F.normalize(look_at_point(cam) - origin, dim=-1)
    up0 = torch.zeros_like(forward)
    up0[:, 1] = 1.0
    left = F.normalize(torch.cross(up0, forward, dim=-1), dim=-1)
    up = F.normalize(torch.cross(forward, left, dim=-1), dim=-1)
    mat = torch.eye(4, dtype=origin.dtype, device=origin.device).repeat(origin.shape[0], 1, 1)
    mat[:, :3, :3] = torch.stack([-left, up, -forward], dim=-1)
    mat[:, :3, 3] = origin
    return mat


def fov_to_focal(fov_deg: torch.Tensor | float, resolution: int) -> torch.Tensor | float:
    """Focal length in pixels for the pixel-centre convention: ((W - 1) / 2) / tan(fov / 2)."""
    half = (resolution - 1) / 2
    if isinstance(fov_deg, torch.Tensor):
        return half / torch.tan(torch.deg2rad(fov_deg) / 2)
    return half / math.tan(math.radians(fov_deg) / 2)


def focal_to_fov(focal_px: torch.Tensor | float, resolution: int) -> torch.Tensor | float:
    """Inverse of :func:`fov_to_focal` (degrees)."""
    half = (resolution - 1) / 2
    if isinstance(focal_px, torch.Tensor):
        return torch.rad2deg(2 * torch.atan(half / focal_px))
    return math.degrees(2 * math.atan(half / focal_px))


def pixel_grid(
    resolution: int, patch: PatchParams | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Normalised pixel-centre coordinates (x right, y up) of a full image or of patches.

    Returns [B, H*W, 2] (B = 1 without a patch), row-major from the top-left pixel.
    """
    xs = torch.linspace(-1.0, 1.0, resolution, device=device)
    ys = torch.linspace(1.0, -1.0, resolution, device=device)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([x, y], dim=-1).reshape(1, -1, 2)  # [1, H*W, 2]
    if patch is None:
        return grid
    scale = patch.scale.to(device)[:, None, None]  # [B, 1, 1]
    return (grid + 1.0) * scale - 1.0 + 2.0 * patch.offset.to(device)[:, None, :]


def generate_rays(
    cam: CameraParams, resolution: int, patch: PatchParams | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays through the pixel centres of a resolution^2 image (or patch).

    Returns origins and unit directions, each [B, H*W, 3]; t along a ray is metric distance.
    """
    c2w = cam2world(cam)  # [B, 4, 4]
    grid = pixel_grid(resolution, patch, device=c2w.device).to(c2w.dtype)  # [B|1, N, 2]
    grid = grid.expand(cam.batch_size, -1, -1)
    z = -1.0 / torch.tan(torch.deg2rad(cam.fov) / 2)  # [B]
    dirs_cam = torch.cat([grid, z[:, None, None].expand(-1, grid.shape[1], 1)], dim=-1)
    dirs_cam = F.normalize(dirs_cam, dim=-1)
    dirs = dirs_cam @ c2w[:, :3, :3].transpose(1, 2)  # R @ d for each ray
    origins = c2w[:, None, :3, 3].expand_as(dirs)
    return origins, dirs


def project_points(cam: CameraParams, points: torch.Tensor) -> torch.Tensor:
    """Project world points [B, N, 3] to the normalised pixel grid of :func:`pixel_grid`.

    Returns [B, N, 2] (x right, y up); a point on the optical axis maps to (0, 0).
    """
    c2w = cam2world(cam)
    rot, origin = c2w[:, :3, :3], c2w[:, :3, 3]
    local = (points - origin[:, None]) @ rot  # world -> camera: R^T (p - o)
    z = -1.0 / torch.tan(torch.deg2rad(cam.fov) / 2)  # image plane at z = -1/tan(fov/2)
    return local[..., :2] / local[..., 2:3] * z[:, None, None]
