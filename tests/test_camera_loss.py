"""The combined camera-generator loss (spec 4.4): force-mean + annealed EMD on a real camera
generator, with gradients reaching its parameters."""

import math

import pytest
import torch
from torch import nn

from gp3d.models.camera_generator import CameraGenerator
from gp3d.models.camera_prior import CameraPrior
from gp3d.training.camera_loss import CameraLoss
from gp3d.training.camera_regularizers import EMD_WEIGHTS

YAW_SHIFT = 3.0  # logit offset: sigmoid(3) ~ 0.95 -> yaw near the top of [-1.57, 1.57]


class _G(nn.Module):
    """Just what CameraLoss reads from the generator."""

    def __init__(self) -> None:
        super().__init__()
        self.z_dim, self.c_dim = 4, 3
        self.camera_prior = CameraPrior()
        self.camera_generator = CameraGenerator(self.camera_prior, c_dim=3, z_dim=4, hid_dim=16)
        last = self.camera_generator.origin_adaptor.main[-1]
        with torch.no_grad():  # an off-centre posterior: yaw logits pushed up
            last.weight.mul_(0.1)
            last.bias[0] = YAW_SHIFT / last.bias_gain


def test_force_mean_makes_the_loss_positive_and_trains_the_camera_generator():
    torch.manual_seed(0)
    G = _G()
    loss_fn = CameraLoss(force_mean_weight=10.0, mean_num_samples=64, emd_weights=None)
    loss, logs = loss_fn(G, kimg=0.0, device="cpu")
    fm = logs["train/camera/force_mean"]
    # the yaw mean sits near 1.57 * (2 sigmoid(3) - 1) ~ 1.4 rad from the prior centre 0
    assert fm.item() > 1.0
    assert loss.item() == pytest.approx(10.0 * fm.item(), rel=1e-6)
    assert logs["camera/yaw_mean"].item() > 1.0
    loss.backward()
    bias = G.camera_generator.origin_adaptor.main[-1].bias
    assert bias.grad is not None and bias.grad[0] > 0  # descent lowers the yaw logit
    grads = [p.grad for p in G.camera_generator.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    # one descent step moves the posterior mean towards the prior centre
    with torch.no_grad():
        for p in G.camera_generator.parameters():
            p -= 0.05 * p.grad
    torch.manual_seed(1)
    _, logs_after = loss_fn(G, kimg=0.0, device="cpu")
    assert logs_after["train/camera/force_mean"] < fm


def test_off_switch_and_emd_ramp_add_up():
    torch.manual_seed(0)
    G = _G()
    off = CameraLoss(force_mean_weight=0.0, emd_weights=None)
    loss, logs = off(G, kimg=0.0, device="cpu")
    assert loss.item() == 0.0 and "train/camera/force_mean" not in logs
    both = CameraLoss(
        force_mean_weight=10.0, mean_num_samples=64, emd_weights=EMD_WEIGHTS, emd_anneal_kimg=100
    )
    loss0, logs0 = both(G, kimg=0.0, device="cpu")
    assert "train/camera/emd" not in logs0  # lambda_emd = 0 at the start: term skipped
    loss, logs = both(G, kimg=25.0, device="cpu")  # lambda_emd = 0.25 a quarter of the way
    expected = 10.0 * logs["train/camera/force_mean"] + 0.25 * logs["train/camera/emd"]
    assert logs["train/camera/emd"].item() > 0  # posterior yaw is off the prior's marginal
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert math.isfinite(loss.item())
