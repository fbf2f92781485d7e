"""Camera trajectories (spec 8.4): frame counts, the formulas, prior bounds, per-sample paths."""

import math

import pytest
import torch

from gp3d.inference.trajectories import (
    TRAJECTORIES,
    front_circle,
    line,
    mean_camera,
    point,
    points,
    posterior_mean_camera,
    wiggle,
)
from gp3d.models.camera_prior import CameraPrior
from gp3d.types import CameraParams
from tests.tiny_generator import tiny_generator

PRIOR = CameraPrior()  # the original's `camera: uniform` prior


def _inside(cam: CameraParams, bounds) -> bool:
    lo, hi = bounds
    x = cam.to_tensor()
    return bool(((x >= lo - 1e-6) & (x <= hi + 1e-6)).all())


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("front_circle", {"num_frames": 64}, 64),
        ("front_circle", {"num_frames": 5}, 5),
        ("wiggle", {"num_frames": 16}, 16),
        ("line", {"num_frames": 16}, 16),
        ("line", {"num_frames": 7, "fov": 20.0}, 7),
        ("points", {}, 3),
        ("points", {"yaw_offsets": (-1.0, -0.5, 0.0, 0.5, 1.0)}, 5),
        ("point", {}, 1),
    ],
)
def test_requested_number_of_cameras_inside_the_prior(name, kwargs, expected):
    base = mean_camera(PRIOR, batch_size=3)
    cams = TRAJECTORIES[name](base, **kwargs, bounds=PRIOR.bounds())
    assert len(cams) == expected
    for cam in cams:
        assert cam.batch_size == 3  # one path per sample (the original's wiggle broke here)
        assert _inside(cam, PRIOR.bounds())
        assert torch.isfinite(cam.to_tensor()).all()


def test_formulas_match_the_spec():
    base = mean_camera(PRIOR)  # yaw 0, pitch ~pi/2, fov 27.5
    b = base.to_tensor()[0]
    cams = front_circle(base, num_frames=5)  # t = 0, .25, .5, .75, 1
    yaw = torch.stack([c.yaw[0] for c in cams])
    pitch = torch.stack([c.pitch[0] for c in cams])
    fov = torch.stack([c.fov[0] for c in cams])
    torch.testing.assert_close(
        yaw, b[0] + 0.5 * torch.tensor([0.0, 1, 0, -1, 0]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        pitch, b[1] + 0.3 * torch.tensor([1.0, 0, -1, 0, 1]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(fov, b[4] + torch.tensor([0.0, 1, 0, -1, 0]), atol=1e-5, rtol=0)

    w = wiggle(base, num_frames=16)
    assert w[0].yaw.item() == pytest.approx(-1.57) and w[-1].yaw.item() == pytest.approx(1.57)
    assert w[0].pitch.item() == pytest.approx(math.pi / 2 + 0.5)  # absolute, cos(0) = 1
    ln = line(base, num_frames=16, fov=20.0)
    assert all(c.pitch.item() == pytest.approx(1.57) and c.fov.item() == 20.0 for c in ln)
    assert line(base)[3].fov.item() == pytest.approx(b[4].item())  # fov null = the base's
    p = points(base)
    assert [c.yaw.item() for c in p] == pytest.approx([-0.5, 0.0, 0.5])
    single = point(base, yaw=0.1, pitch=-0.2, fov=3.0)[0]
    assert single.yaw.item() == pytest.approx(b[0].item() + 0.1)
    assert single.fov.item() == pytest.approx(b[4].item() + 3.0)
    # the look-at, radius and roll of the base camera are kept along every path
    for cam in cams + w + ln + p:
        torch.testing.assert_close(
            cam.to_tensor()[:, [2, 3, 5, 6, 7]], base.to_tensor()[:, [2, 3, 5, 6, 7]]
        )


def test_clamping_only_touches_cameras_outside_the_box():
    lo, hi = PRIOR.bounds()
    edge = mean_camera(PRIOR)
    x = edge.to_tensor()
    x[:, 0], x[:, 4] = 1.4, 44.5  # near the yaw and fov limits
    edge = CameraParams.from_tensor(x)
    raw = front_circle(edge, num_frames=9)
    clamped = front_circle(edge, num_frames=9, bounds=(lo, hi))
    assert not all(_inside(c, (lo, hi)) for c in raw)
    assert all(_inside(c, (lo, hi)) for c in clamped)
    assert clamped[0].to_tensor().equal(raw[0].to_tensor())  # t = 0: yaw and fov offsets are 0


def test_posterior_mean_camera_is_the_mean_of_posterior_samples(tmp_path):
    g = tiny_generator(tmp_path, c_dim=3)
    G = g.G
    c = torch.eye(3)[[0, 2]]
    mean = posterior_mean_camera(G, c, num_samples=64, seed=1)
    assert mean.batch_size == 2 and _inside(mean, G.camera_prior.bounds())
    # recompute class 2's mean by hand with the same draws
    gen = torch.Generator().manual_seed(1)
    for row in range(2):
        prior = G.camera_prior.sample(64, generator=gen, device="cpu")
        z = torch.randn(64, G.z_dim, generator=gen)
        post = G.cameras(z, c[row][None].expand(64, -1), prior=prior).to_tensor()
        torch.testing.assert_close(mean.to_tensor()[row], post.mean(0))
    # the camera generator is class-conditional, so the two classes get different base cameras
    assert not torch.allclose(mean.to_tensor()[0], mean.to_tensor()[1])
