import itertools
import math

import pytest
import torch
from torch import nn

from gp3d.models.camera_generator import CameraGenerator
from gp3d.models.camera_prior import CameraPrior
from gp3d.training.camera_regularizers import (
    EMD_WEIGHTS,
    LIPSCHITZ_EPS,
    emd_loss,
    emd_per_field,
    force_mean_loss,
    lipschitz_penalty,
    wasserstein_1d_sq,
)
from gp3d.types import CAMERA_FIELDS, CameraParams


def test_wasserstein_zero_for_identical_and_permuted_sets():
    x = torch.randn(64, generator=torch.Generator().manual_seed(0))
    assert wasserstein_1d_sq(x, x).item() == 0.0
    assert wasserstein_1d_sq(x, x[torch.randperm(64)]).item() == 0.0
    assert wasserstein_1d_sq(x, x + 0.1).item() == pytest.approx(0.01, rel=1e-4)
    assert wasserstein_1d_sq(x, 2 * x).item() > 0


def test_wasserstein_equals_brute_force_optimum():
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = (
            torch.randn(5, generator=g, dtype=torch.float64),
            torch.rand(5, generator=g, dtype=torch.float64),
        )
        brute = min(
            (x - y[list(perm)]).square().mean().item() for perm in itertools.permutations(range(5))
        )
        assert wasserstein_1d_sq(x, y).item() == pytest.approx(brute, rel=1e-12)


def test_wasserstein_passes_gradients():
    x = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
    y = torch.tensor([2.0, 0.5, 0.0], requires_grad=True)  # sorted: 0, 0.5, 2
    wasserstein_1d_sq(x, y).backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 1.0, 0.0]) / 3)  # 2 (x - y_sorted) / N
    torch.testing.assert_close(y.grad, torch.tensor([0.0, -1.0, 0.0]) / 3)


def test_emd_loss_weights_and_units():
    prior = CameraPrior().sample(64, generator=torch.Generator().manual_seed(2))
    assert emd_loss(prior, prior).item() == 0.0
    shifted = prior.to_tensor().clone()
    shifted[:, CAMERA_FIELDS.index("yaw")] += 0.1  # W = 0.01 -> x 2.0
    shifted[:, CAMERA_FIELDS.index("roll")] += 1.0  # roll dropped
    shifted[:, CAMERA_FIELDS.index("radius")] += 1.0  # weight 0
    shifted[:, CAMERA_FIELDS.index("fov")] += 10.0  # W = 100 degrees^2 -> x 1e-4
    shifted[:, CAMERA_FIELDS.index("la_radius")] += 1.0  # W = 1 -> x 1e-4
    loss = emd_loss(CameraParams.from_tensor(shifted), prior, EMD_WEIGHTS)
    assert loss.item() == pytest.approx(2.0 * 0.01 + 1e-4 * 100 + 1e-4 * 1.0, rel=1e-4)
    per_field = emd_per_field(CameraParams.from_tensor(shifted), prior)
    assert set(per_field) == set(CAMERA_FIELDS)
    with pytest.raises(ValueError):
        emd_loss(prior, prior, {"angle": 1.0})


def test_force_mean_loss():
    mu = torch.tensor([0.0, math.pi / 2, 0.0])
    n = 16
    cam = CameraParams.from_tensor(torch.zeros(n, 8))
    cam.yaw = torch.linspace(-1, 1, n)  # mean 0
    cam.pitch = math.pi / 2 + torch.linspace(-0.5, 0.5, n)
    assert force_mean_loss(cam, mu).item() == pytest.approx(0.0, abs=1e-6)
    cam.yaw = cam.yaw + 0.3
    cam.pitch = cam.pitch - 0.4
    assert force_mean_loss(cam, mu).item() == pytest.approx(0.5, rel=1e-5)  # norm, not squared


class _ToyElementwise(nn.Module):
    """posterior_k = a_k * prior_k + b_k * prior_k^3: d/dprior_k = a_k + 3 b_k prior_k^2."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(a), nn.Parameter(b)

    def forward(self, cam: CameraParams, z, c) -> CameraParams:
        x = cam.to_tensor()
        return CameraParams.from_tensor(self.a * x + self.b * x**3)


def _reg(g: torch.Tensor) -> torch.Tensor:
    return (g.abs() + 1 / (g.abs() + 1e-4)).mean()


def test_lipschitz_matches_finite_differences():
    torch.manual_seed(3)
    toy = _ToyElementwise(torch.rand(8) + 0.2, 0.3 * torch.randn(8)).double()
    x = torch.randn(32, 8, dtype=torch.float64)
    weights = {"angles": 1.0, "radius": 0.5, "fov": 2.0, "look_at": 0.1}
    value = lipschitz_penalty(toy, CameraParams.from_tensor(x), None, None, weights)
    field_w = [1.0, 1.0, 0.0, 0.5, 2.0, 0.1, 0.1, 0.1]  # roll is dropped
    h = 1e-6
    expected = 0.0
    with torch.no_grad():
        for i, w in enumerate(field_w):
            e = torch.zeros(8, dtype=torch.float64)
            e[i] = h
            up = toy(CameraParams.from_tensor(x + e), None, None).to_tensor()[:, i]
            down = toy(CameraParams.from_tensor(x - e), None, None).to_tensor()[:, i]
            expected += w * _reg((up - down) / (2 * h))
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()  # create_graph: the penalty trains the map
    assert toy.a.grad is not None and toy.a.grad.abs().sum() > 0


def test_lipschitz_minimised_at_unit_gain():
    x = CameraParams.from_tensor(torch.randn(16, 8))
    values = {}
    for s in (0.25, 0.9, 1.0, 1.1, 4.0):
        toy = _ToyElementwise(torch.full((8,), s), torch.zeros(8))
        values[s] = lipschitz_penalty(toy, x, None, None, {"angles": 1.0}).item()
    assert min(values, key=values.get) == 1.0
    assert values[1.0] == pytest.approx(2 * (1 + 1 / 1.0001), rel=1e-5)  # yaw + pitch


def test_lipschitz_on_camera_generator():
    prior = CameraPrior()
    torch.manual_seed(4)
    gen = CameraGenerator(prior, c_dim=0, z_dim=8, hid_dim=16)
    cams = prior.sample(16)
    value = lipschitz_penalty(gen, cams, torch.randn(16, 8), None)
    assert torch.isfinite(value) and value.item() > 0
    value.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.parameters())


def test_force_mean_uses_all_three_angles_and_is_smooth_at_its_minimum():
    # mean (yaw, pitch, roll) = (0.5, 1.2, 0.2) against the prior mean (0.2, 1.6, 0.0):
    # difference (0.3, -0.4, 0.2) -> norm sqrt(0.29); roll (fixed at 0 in 3DGP) still counts
    n = 4
    cam = CameraParams.from_tensor(torch.zeros(n, 8, dtype=torch.float64))
    cam.yaw = torch.tensor([0.4, 0.6, 0.5, 0.5], dtype=torch.float64)
    cam.pitch = torch.full((n,), 1.2, dtype=torch.float64)
    cam.roll = torch.tensor([0.0, 0.4, 0.2, 0.2], dtype=torch.float64)
    mu = torch.tensor([0.2, 1.6, 0.0])
    assert force_mean_loss(cam, mu).item() == pytest.approx(math.sqrt(0.29), rel=1e-6)
    # at the prior mean the +1e-8 keeps the norm differentiable (no nan gradient)
    yaw = torch.full((n,), 0.25, dtype=torch.float64, requires_grad=True)  # exact in binary
    cam.yaw, cam.pitch, cam.roll = yaw, torch.full((n,), 1.5, dtype=torch.float64), 0 * yaw
    loss = force_mean_loss(cam, torch.tensor([0.25, 1.5, 0.0], dtype=torch.float64))
    loss.backward()
    assert loss.item() < 1e-7 and torch.isfinite(yaw.grad).all()


def test_missing_weight_groups_count_as_zero():
    prior = CameraPrior().sample(32, generator=torch.Generator().manual_seed(5))
    shifted = prior.to_tensor().clone()
    shifted[:, CAMERA_FIELDS.index("fov")] += 3.0
    shifted[:, CAMERA_FIELDS.index("la_pitch")] += 0.5
    post = CameraParams.from_tensor(shifted)
    assert emd_loss(post, prior, {"angles": 5.0}).item() == 0.0  # fov, look-at: weight 0
    assert emd_loss(post, prior, {"fov": 2.0}).item() == pytest.approx(2.0 * 9.0, rel=1e-5)
    assert emd_loss(post, prior, {"look_at": 4.0}).item() == pytest.approx(4 * 0.25, rel=1e-5)
    assert emd_loss(post, prior, {"fov": 1.0}).item() == pytest.approx(9.0, rel=1e-5)  # weight 1
    assert emd_loss(post, prior).item() == emd_loss(post, prior, EMD_WEIGHTS).item()


class _Constant(nn.Module):
    """A camera generator that ignores its input: every derivative d posterior / d prior is 0."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(8))

    def forward(self, cam: CameraParams, z, c) -> CameraParams:
        return CameraParams.from_tensor(self.bias.expand(cam.batch_size, 8))


def test_lipschitz_of_a_collapsed_generator_is_the_inverse_eps():
    # g = 0 for every field -> |g| + 1 / (|g| + 1e-4) = 1e4 per field (spec 4.5: collapse is
    # what the term punishes); fields with no path to the input must not raise.
    x = CameraParams.from_tensor(torch.randn(6, 8))
    value = lipschitz_penalty(_Constant(), x, None, None, {"fov": 1.0, "radius": 0.5})
    assert value.item() == pytest.approx(1.5e4, rel=1e-6)


def test_wasserstein_per_row_on_the_last_dim_and_size_check():
    x = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(wasserstein_1d_sq(x, y), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"equal-size samples.*\(3,\) and \(4,\)"):
        wasserstein_1d_sq(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"unknown camera weight groups \['angle'\]"):
        emd_loss(
            CameraParams.from_tensor(torch.zeros(2, 8)),
            CameraParams.from_tensor(torch.zeros(2, 8)),
            {"angle": 1.0},
        )


class _ClassGain(nn.Module):
    """posterior = c[:, :1] * prior: the gain per sample comes from the class input."""

    def forward(self, cam: CameraParams, z, c) -> CameraParams:
        return CameraParams.from_tensor(c[:, :1] * cam.to_tensor())


def test_lipschitz_passes_the_class_input_to_the_generator():
    x = CameraParams.from_tensor(torch.randn(4, 8))
    c = torch.tensor([[0.5, 9.0], [1.0, 9.0], [2.0, 9.0], [4.0, 9.0]])
    g = c[:, 0]
    want = (g + 1 / (g + LIPSCHITZ_EPS)).mean().item()
    assert lipschitz_penalty(_ClassGain(), x, None, c, {"fov": 1.0}).item() == pytest.approx(want)
