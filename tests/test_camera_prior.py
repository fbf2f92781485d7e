import math

import pytest
import torch

from gp3d.models.camera import PITCH_EPS
from gp3d.models.camera_prior import CameraPrior, ParamDist, as_param_dist, sample_param
from gp3d.types import CAMERA_FIELDS

N = 20_000


def test_default_prior_matches_spec_table():
    prior = CameraPrior()
    d = prior.dists
    assert d["yaw"] == ParamDist("uniform", min=-1.57, max=1.57)
    assert d["pitch"] == ParamDist("uniform", min=0.785398, max=2.356194)
    assert d["fov"] == ParamDist("uniform", min=10.0, max=45.0)
    assert d["la_yaw"].dist == "spherical_uniform"
    assert (d["la_yaw"].min, d["la_yaw"].max) == pytest.approx((-math.pi, math.pi))
    assert d["la_pitch"].dist == "spherical_uniform"
    assert (d["la_pitch"].min, d["la_pitch"].max) == pytest.approx((0.0, math.pi))
    assert d["la_radius"] == ParamDist("uniform", min=0.0, max=0.2)
    lo, hi = prior.bounds()
    expected_lo = [-1.57, 0.785398, 0.0, 1.0, 10.0, -math.pi, 0.0, 0.0]
    expected_hi = [1.57, 2.356194, 0.0, 1.0, 45.0, math.pi, math.pi, 0.2]
    torch.testing.assert_close(lo, torch.tensor(expected_lo))
    torch.testing.assert_close(hi, torch.tensor(expected_hi))
    torch.testing.assert_close(prior.mean_angles(), torch.tensor([0.0, math.pi / 2, 0.0]))
    cam = prior.sample(256)
    assert torch.all(cam.radius == 1.0) and torch.all(cam.roll == 0.0)


@pytest.mark.parametrize(
    "dist",
    [
        ParamDist("uniform", min=-1.0, max=2.0),
        ParamDist("normal", mean=0.5, std=1.0, min=-0.5, max=1.0),
        ParamDist("normal", mean=0.3, std=0.0),
        ParamDist("truncnorm", mean=0.0, std=0.4, min=-0.3, max=0.8),
        ParamDist("truncnorm", mean=0.0, std=0.1, min=0.5, max=0.6),  # far in the right tail
        ParamDist("truncnorm", mean=0.0, std=0.1, min=-0.6, max=-0.5),  # far in the left tail
        ParamDist("spherical_uniform", min=-math.pi, max=math.pi),
        ParamDist("static", mean=1.0),
    ],
)
@pytest.mark.parametrize("polar", [False, True])
def test_samples_within_bounds(dist, polar):
    x = sample_param(dist, N, polar=polar, generator=torch.Generator().manual_seed(0))
    lo, hi = dist.bounds()
    assert x.shape == (N,) and torch.isfinite(x).all()
    assert x.min() >= lo and x.max() <= hi


def test_prior_samples_within_bounds_for_every_field():
    prior = CameraPrior(
        yaw={"dist": "truncnorm", "mean": 0.0, "std": 0.4, "min": -1.0, "max": 1.0},
        pitch={"dist": "spherical_uniform", "min": 0.0, "max": math.pi},
        radius={"dist": "uniform", "min": 0.9, "max": 1.1},
        fov={"dist": "normal", "mean": 20, "std": 5, "min": 10, "max": 30},
        la_radius=0.0,
    )
    x = prior.sample(N, generator=torch.Generator().manual_seed(1)).to_tensor()
    lo, hi = prior.bounds()
    assert torch.all(x >= lo) and torch.all(x <= hi)
    pitch = x[:, CAMERA_FIELDS.index("pitch")]
    assert pitch.min() >= PITCH_EPS and pitch.max() <= math.pi - PITCH_EPS


def test_truncnorm_moments():
    # N(0, 1) truncated to [0, inf) approximated by [0, 8]: mean sqrt(2/pi).
    d = ParamDist("truncnorm", mean=0.0, std=1.0, min=0.0, max=8.0)
    x = sample_param(d, 50_000, generator=torch.Generator().manual_seed(2))
    assert x.mean().item() == pytest.approx(math.sqrt(2 / math.pi), abs=0.02)


def test_spherical_uniform_pitch_is_uniform_on_the_sphere():
    d = ParamDist("spherical_uniform", min=0.0, max=math.pi)
    pitch = sample_param(d, 50_000, polar=True, generator=torch.Generator().manual_seed(3))
    cos = torch.cos(pitch)  # uniform on [-1, 1] for a uniform sphere
    assert cos.mean().abs() < 0.02
    assert cos.square().mean().item() == pytest.approx(1 / 3, abs=0.02)
    assert pitch.min() > 0 and pitch.max() < math.pi  # v clamped to [1e-5, 1 - 1e-5]
    # Not polar: plain uniform.
    yaw = sample_param(d, 50_000, polar=False, generator=torch.Generator().manual_seed(3))
    assert yaw.mean().item() == pytest.approx(math.pi / 2, abs=0.03)


def test_spherical_pitch_range_must_contain_equator():
    with pytest.raises(ValueError, match="pi/2"):
        CameraPrior(pitch={"dist": "spherical_uniform", "min": 0.1, "max": 0.5})


def test_frontal_and_generator_reproducible():
    prior = CameraPrior()
    cam = prior.sample(64, frontal=True)
    assert torch.all(cam.yaw == 0) and torch.allclose(cam.pitch, torch.full((64,), math.pi / 2))
    assert cam.fov.std() > 0 and cam.la_radius.std() > 0
    a = prior.sample(8, generator=torch.Generator().manual_seed(5)).to_tensor()
    b = prior.sample(8, generator=torch.Generator().manual_seed(5)).to_tensor()
    torch.testing.assert_close(a, b)


def test_normalize_round_trip_and_config_forms():
    prior = CameraPrior()
    x = prior.sample(16).to_tensor()
    u = prior.normalize(x)
    free = [CAMERA_FIELDS.index(k) for k in ("yaw", "pitch", "fov", "la_yaw", "la_pitch")]
    assert torch.all(u[:, free] >= 0) and torch.all(u[:, free] <= 1)
    torch.testing.assert_close(prior.denormalize(u)[:, free], x[:, free], rtol=1e-5, atol=1e-5)
    assert as_param_dist(2) == ParamDist("static", mean=2.0)
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({"dist": "uniform", "min": 10, "max": 21})
    assert CameraPrior(fov=cfg).dists["fov"] == ParamDist("uniform", min=10.0, max=21.0)
    with pytest.raises(ValueError):
        ParamDist("uniform", min=1.0)
    with pytest.raises(ValueError):
        ParamDist("gaussian", mean=0.0)


def test_hydra_instantiates_the_recommended_yaml():
    hydra_utils = pytest.importorskip("hydra.utils")
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create(
        """
        _target_: gp3d.models.camera_prior.CameraPrior
        yaw: {dist: uniform, min: -1.57, max: 1.57}
        pitch: {dist: uniform, min: 0.785398, max: 2.356194}
        radius: 1.0
        fov: {dist: uniform, min: 10, max: 45}
        la_yaw: {dist: spherical_uniform, min: -3.141592653589793, max: 3.141592653589793}
        la_pitch: {dist: spherical_uniform, min: 0.0, max: 3.141592653589793}
        la_radius: {dist: uniform, min: 0.0, max: 0.2}
        """
    )
    prior = hydra_utils.instantiate(cfg)
    assert prior.dists == CameraPrior().dists
