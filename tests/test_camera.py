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
    spherical_to_cartesian,
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


def test_spherical_points_by_hand():
    # spec 3.2: (r sin(p) sin(-yaw), r cos(p), r sin(p) cos(yaw)); y up, pitch < pi/2 is above
    yaw = torch.tensor([0.0, math.pi / 2, math.pi, 0.0, 0.0])
    pitch = torch.tensor([math.pi / 2, math.pi / 2, math.pi / 2, 0.0, math.pi / 4])
    r = torch.tensor([1.0, 2.0, 1.0, 1.5, 2.0])
    s = math.sqrt(2.0)
    want = torch.tensor([[0, 0, 1], [-2, 0, 0], [0, 0, -1], [0, 1.5, 0], [0, s, s]])
    got = camera_origin(CameraParams(yaw, pitch, 0 * r, r, 0 * r + 30, 0 * r, 0 * r, 0 * r))
    torch.testing.assert_close(got, want.float(), atol=1e-6, rtol=0)
    la = CameraParams(0 * r, 0 * r + 1, 0 * r, r, 0 * r + 30, yaw, pitch, r)
    torch.testing.assert_close(look_at_point(la), want.float(), atol=1e-6, rtol=0)


def test_cam2world_axes_by_hand():
    # Camera on -x (yaw = pi/2) looking at the origin: forward +x, up +y, right = +z.
    # Columns are [right (= -left), up, -forward] (spec 3.3).
    cam = canonical()
    cam.yaw = torch.tensor([math.pi / 2])
    cam.radius = torch.tensor([2.0])
    m = cam2world(cam)[0]
    want = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(m[:3, :3], want, atol=1e-6, rtol=0)
    torch.testing.assert_close(m[:3, 3], torch.tensor([-2.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(m[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    # From above (pitch pi/4) the camera's up still has a positive world-y part: no roll flip.
    cam.pitch = torch.tensor([math.pi / 4])
    up = cam2world(cam)[0, :3, 1]
    assert up[1] > 0.5


def test_focal_and_pixel_grid_by_hand():
    # f_px = ((W - 1) / 2) / tan(fov / 2): fov 90, W 3 -> 1; fov 60, W 101 -> 50 sqrt(3)
    assert fov_to_focal(90.0, 3) == pytest.approx(1.0)
    assert fov_to_focal(60.0, 101) == pytest.approx(50 * math.sqrt(3))
    torch.testing.assert_close(
        fov_to_focal(torch.tensor([90.0, 60.0]), 3), torch.tensor([1.0, 3**0.5])
    )
    assert focal_to_fov(1.0, 3) == pytest.approx(90.0)
    torch.testing.assert_close(focal_to_fov(torch.tensor([1.0]), 3), torch.tensor([90.0]))
    # centres of a 3x3 image, row-major from the top-left, x right, y up (spec 2.1)
    want = torch.tensor([[x, y] for y in (1.0, 0.0, -1.0) for x in (-1.0, 0.0, 1.0)])
    torch.testing.assert_close(pixel_grid(3), want[None])
    # x' = (x + 1) s - 1 + 2 o: s = 0.5 at offset (0.5, 0.25) covers x in [0, 1], y in [-0.5, 0.5]
    patch = PatchParams(scale=torch.tensor([0.5]), offset=torch.tensor([[0.5, 0.25]]))
    g = pixel_grid(3, patch)[0]
    torch.testing.assert_close(g[0], torch.tensor([0.0, 0.5]))  # top-left
    torch.testing.assert_close(g[-1], torch.tensor([1.0, -0.5]))  # bottom-right


def test_rays_and_projection_by_hand():
    # fov 90: the image plane is at z = -1, so the top-left pixel's camera ray is (-1, 1, -1)
    cam = canonical(fov=90.0)
    _, dirs = generate_rays(cam, 3)
    torch.testing.assert_close(dirs[0, 0], torch.tensor([-1.0, 1.0, -1.0]) / 3**0.5)
    torch.testing.assert_close(dirs[0, 5], torch.tensor([1.0, 0.0, -1.0]) / 2**0.5)  # middle right
    cam.yaw = torch.tensor([math.pi / 2])  # rotate: camera on -x, right = +z, forward = +x
    _, dirs = generate_rays(cam, 3)
    torch.testing.assert_close(dirs[0, 0], torch.tensor([1.0, 1.0, -1.0]) / 3**0.5)
    # a point above the optical axis projects above the image centre (y up)
    pts = torch.tensor([[[0.0, 0.5, 0.0], [0.0, 0.0, 0.25]]])
    proj = project_points(cam, pts)
    torch.testing.assert_close(proj[0, 0], torch.tensor([0.0, 0.5]))
    torch.testing.assert_close(proj[0, 1], torch.tensor([0.25, 0.0]))  # +z is to the right


def test_float64_cameras_keep_float64_precision():
    # Double-precision cameras (gradchecks, geometry export) get a float64 pose and float64 rays
    # (the pose exact; the pixel grid is built in float32, so rays agree to float32 rounding).
    cam = canonical(fov=90.0).to(torch.float64)
    cam.yaw = torch.tensor([math.pi / 2], dtype=torch.float64)  # on -x: right +z, forward +x
    cam.pitch = torch.tensor([math.pi / 2], dtype=torch.float64)  # not float32's pi / 2
    m = cam2world(cam)
    assert m.dtype == torch.float64
    want = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(m[0, :3, :3], want, atol=1e-12, rtol=0)
    origins, dirs = generate_rays(cam, 7)
    assert dirs.dtype == origins.dtype == torch.float64
    # pixel (row 0, column 1) of 7: x = -2/3, y = 1, image plane z = -1 (fov 90); in the world
    # the camera's (x, y, z) is (-z, y, x)
    local = torch.tensor([-2 / 3, 1.0, -1.0], dtype=torch.float64)
    local = local / local.norm()
    world = torch.stack([-local[2], local[1], local[0]])
    torch.testing.assert_close(dirs[0, 1], world, atol=1e-7, rtol=0)


def test_spherical_points_of_any_shape_and_pose_matrix_shape():
    # spec 3.2 for inputs [..., ]: the xyz axis is always last ([2, 3] angles -> [2, 3, 3])
    yaw = torch.tensor([[0.0, math.pi / 2, math.pi], [0.0, 0.0, math.pi / 2]])
    pitch = torch.tensor([[math.pi / 2] * 3, [0.0, math.pi / 2, math.pi / 2]])
    pts = spherical_to_cartesian(yaw, pitch, torch.full((2, 3), 2.0))
    assert pts.shape == (2, 3, 3)
    want = torch.tensor([[[0, 0, 2], [-2, 0, 0], [0, 0, -2]], [[0, 2, 0], [0, 0, 2], [-2, 0, 0]]])
    torch.testing.assert_close(pts, want.float(), atol=1e-6, rtol=0)
    # a batch of exactly 3 cameras (torch.cross without dim= would take the batch axis)
    rot = cam2world(random_cams(3, seed=1))[:, :3, :3]
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3).expand(3, 3, 3))
    # cam2world is [B, 4, 4] with the homogeneous row (0, 0, 0, 1)
    m = cam2world(random_cams(5))
    assert m.shape == (5, 4, 4)
    torch.testing.assert_close(m[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(5, 4))
