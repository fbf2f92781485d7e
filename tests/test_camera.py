import math

import pytest
import torch

from gp3d.models.camera import (
    cam2world,
    camera_origin,
    focal_to_fov,
    fov_to_focal,
    generate_rays,
    look_at_point,
    pixel_grid,
    project_points,
)
from gp3d.types import CameraParams, PatchParams


def random_cams(n: int, seed: int = 0) -> CameraParams:
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)  # noqa: E731
    return CameraParams(
        yaw=u(-math.pi, math.pi),
        pitch=u(0.3, math.pi - 0.3),
        roll=torch.zeros(n),
        radius=u(0.8, 1.2),
        fov=u(10, 60),
        la_yaw=u(-math.pi, math.pi),
        la_pitch=u(0, math.pi),
        la_radius=u(0, 0.2),
    )


def canonical(n=1, fov=30.0):
    z = torch.zeros(n)
    return CameraParams(
        z, torch.full((n,), math.pi / 2), z, torch.ones(n), torch.full((n,), fov), z, z, z
    )


def test_canonical_pose_is_identity_at_z1():
    m = cam2world(canonical())[0]
    assert torch.allclose(m[:3, :3], torch.eye(3), atol=1e-6)
    assert torch.allclose(m[:3, 3], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    _, dirs = generate_rays(canonical(), 3)
    assert torch.allclose(dirs[0, 4], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)  # central ray


def test_yaw_moves_camera_towards_minus_x():
    cam = canonical()
    cam.yaw = torch.tensor([0.3])
    assert camera_origin(cam)[0, 0] < 0


def test_cam2world_orthonormal_and_looks_at_target():
    cams = random_cams(64)
    m = cam2world(cams)
    rot = m[:, :3, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3).expand(64, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(64), atol=1e-5)
    fwd = -rot[:, :, 2]
    to_target = torch.nn.functional.normalize(look_at_point(cams) - camera_origin(cams), dim=-1)
    assert torch.allclose(fwd, to_target, atol=1e-5)
    # The look-at point projects to the image centre.
    assert torch.allclose(
        project_points(cams, look_at_point(cams)[:, None])[:, 0], torch.zeros(64, 2), atol=1e-4
    )


def test_rays_unit_length_and_pass_through_pixel_centres():
    cams = random_cams(4)
    origins, dirs = generate_rays(cams, 8)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(4, 64), atol=1e-6)
    assert torch.allclose(origins, camera_origin(cams)[:, None].expand_as(origins))
    pts = origins + 0.9 * dirs
    assert torch.allclose(project_points(cams, pts), pixel_grid(8).expand(4, -1, -1), atol=1e-4)


@pytest.mark.parametrize("res", [64, 256])
def test_fov_and_focal_agree(res):
    fov = torch.tensor([10.0, 30.0, 45.0])
    assert torch.allclose(focal_to_fov(fov_to_focal(fov, res), res), fov, atol=1e-4)
    # The border pixel centres are at angle fov/2 from the optical axis.
    cams = canonical(3)
    cams.fov = fov
    _, dirs = generate_rays(cams, res)
    left_mid = dirs[:, (res // 2) * res]  # first pixel of a row (x = -1)
    angle = torch.rad2deg(torch.atan2(-left_mid[:, 0], -left_mid[:, 2]))
    assert torch.allclose(angle, fov / 2, atol=1e-3)
    # pinhole: pixel offset (in pixels from the centre) = f * tan(angle)
    f = fov_to_focal(fov, res)
    assert torch.allclose(
        f * torch.tan(torch.deg2rad(fov / 2)), torch.full((3,), (res - 1) / 2), atol=1e-3
    )


def test_patch_grid_is_subwindow_with_bottom_origin():
    patch = PatchParams(scale=torch.tensor([0.5]), offset=torch.tensor([[0.0, 0.0]]))
    g = pixel_grid(4, patch)[0]
    assert g[:, 0].min() == -1.0 and g[:, 0].max() == 0.0
    assert g[:, 1].min() == -1.0 and g[:, 1].max() == 0.0  # o_y = 0 selects the bottom half
    full = pixel_grid(4, PatchParams.full(1))
    assert torch.allclose(full, pixel_grid(4))
