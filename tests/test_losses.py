import math

import pytest
import torch

from gp3d.training import schedules
from gp3d.training.blur import blur_images
from gp3d.training.losses import discriminator_loss, distillation_loss, generator_loss, r1_penalty


def test_gan_losses_values():
    z = torch.zeros(4)
    assert math.isclose(generator_loss(z).item(), math.log(2), rel_tol=1e-6)
    assert math.isclose(discriminator_loss(z, z).item(), 2 * math.log(2), rel_tol=1e-6)
    # D is rewarded for high real and low fake logits
    assert discriminator_loss(torch.full((4,), 5.0), torch.full((4,), -5.0)) < 0.02


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_non_saturating_losses_at_nonzero_logits():
    # spec 7.1: L_G = E softplus(-D(G(z))), L_D = E softplus(D(fake)) + E softplus(-D(real)).
    # Logits where softplus(x) != softplus(-x), so a flipped sign cannot hide.
    fake = torch.tensor([2.0, -1.0, 0.5])
    real = torch.tensor([1.5, -0.5, 3.0])
    g = sum(_softplus(-x) for x in fake.tolist()) / 3
    d_fake = sum(_softplus(x) for x in fake.tolist()) / 3
    d_real = sum(_softplus(-x) for x in real.tolist()) / 3
    assert math.isclose(generator_loss(fake).item(), g, rel_tol=1e-6)
    assert math.isclose(discriminator_loss(real, fake).item(), d_fake + d_real, rel_tol=1e-6)
    assert math.isclose(discriminator_loss(None, fake).item(), d_fake, rel_tol=1e-6)
    assert math.isclose(discriminator_loss(real, None).item(), d_real, rel_tol=1e-6)


def test_non_saturating_loss_gradient_signs():
    # G improves by raising D(fake); D improves by lowering D(fake) and raising D(real).
    fake = torch.tensor([2.0, -1.0, 0.5], requires_grad=True)
    generator_loss(fake).backward()
    # d/dx mean softplus(-x) = -sigmoid(-x) / N: negative, and not vanishing for bad fakes
    torch.testing.assert_close(fake.grad, -torch.sigmoid(-fake.detach()) / 3)
    fake_d = fake.detach().clone().requires_grad_(True)
    real = torch.tensor([1.5, -0.5, 3.0], requires_grad=True)
    discriminator_loss(real, fake_d).backward()
    torch.testing.assert_close(fake_d.grad, torch.sigmoid(fake_d.detach()) / 3)
    torch.testing.assert_close(real.grad, -torch.sigmoid(-real.detach()) / 3)


def test_r1_on_analytic_discriminator():
    # D(x) = sum(w * x) has dD/dx = w, so R1 = gamma/2 * |w|^2 for every sample.
    w = torch.randn(1, 4, 5, 5)
    x = torch.randn(3, 4, 5, 5, requires_grad=True)
    logits = (x * w).flatten(1).sum(1)
    r1 = r1_penalty(logits, x, gamma=0.2)
    assert torch.allclose(r1, 0.1 * w.square().sum(), rtol=1e-5)


def test_r1_double_backward_reaches_parameters():
    lin = torch.nn.Linear(10, 1)
    x = torch.randn(4, 10, requires_grad=True)
    r1 = r1_penalty(torch.tanh(lin(x)).squeeze(1), x, gamma=1.0)
    r1.backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


def test_distillation_loss_zero_at_target_and_scale_weighting():
    t = torch.randn(4, 16)
    assert distillation_loss(t.clone().requires_grad_(), t, torch.rand(4)).item() < 1e-5
    pred = t + 1.0  # every sample at distance 4 (sqrt of 16)
    assert math.isclose(distillation_loss(pred, t).item(), 4.0, rel_tol=1e-5)
    assert math.isclose(distillation_loss(pred, t, squared=True).item(), 16.0, rel_tol=1e-5)
    # weights s / mean(s): samples with small patches count less
    pred = t.clone()
    pred[0] += 1.0
    big, small = torch.tensor([1.0, 0.25, 0.25, 0.25]), torch.tensor([0.25, 1.0, 1.0, 1.0])
    assert distillation_loss(pred, t, big) > distillation_loss(pred, t, small)
    # the weights are exactly s / mean(s): distances 4, 0, 0, 2 weighted 2, 1, 1, 0 (mean s 0.5)
    pred = t.clone()
    pred[0] += 1.0
    pred[3] += 0.5
    scale = torch.tensor([1.0, 0.5, 0.5, 0.0])
    assert math.isclose(
        distillation_loss(pred, t, scale).item(), (4 * 2 + 0 + 0 + 0) / 4, rel_tol=1e-5
    )


def test_schedule_endpoints_match_spec():
    assert schedules.blur_sigma(0) == 10 and schedules.blur_sigma(200) == 0
    assert schedules.nerf_noise_std(0) == 1 and schedules.nerf_noise_std(5000) == 0
    assert schedules.patch_beta(0) == 0.001 and schedules.patch_beta(1e9) == 0.8
    assert math.isclose(schedules.r1_gamma_auto(256, 64), 0.2048)
    lr, betas = schedules.lazy_reg_adam(0.002, (0.0, 0.99), 16)
    assert math.isclose(lr, 0.00188235, rel_tol=1e-5) and math.isclose(
        betas[1], 0.9905855, rel_tol=1e-6
    )
    assert math.isclose(schedules.ema_beta(10**9, 64, 20.0), 0.9977844, rel_tol=1e-6)
    assert schedules.ema_beta(6400, 64, 20.0) < schedules.ema_beta(64_000, 64, 20.0)  # ramp-up


def test_schedules_mid_ramp_and_clamped_outside():
    # linear ramps (spec 7.4): halfway and a quarter of the way, and flat outside [0, duration]
    assert math.isclose(schedules.blur_sigma(100), 5.0)
    assert math.isclose(schedules.blur_sigma(50), 7.5)
    assert schedules.blur_sigma(1e6) == 0 and schedules.blur_sigma(-10) == 10
    assert math.isclose(schedules.nerf_noise_std(1250), 0.75)
    assert math.isclose(schedules.patch_beta(5000), 0.001 + 0.5 * 0.799)
    assert math.isclose(schedules.patch_beta(2500), 0.001 + 0.25 * 0.799)
    assert math.isclose(schedules.linear_schedule(3, 2.0, -2.0, 4), -1.0)
    assert schedules.linear_schedule(3, 2.0, -2.0, 0) == -2.0  # no ramp: the end value
    assert math.isclose(schedules.linear_schedule(0.25, 0.0, 1.0, 0.5), 0.5)  # short ramps too
    # patch scale mean at beta = 0.8: 0.25 + 0.75 / 1.8 (spec 2.6)
    assert math.isclose(schedules.mean_patch_scale(0.25, 0.8), 0.25 + 0.75 / 1.8)
    assert math.isclose(schedules.mean_patch_scale(0.25, 0.0), 1.0)


def test_ema_beta_half_life_during_and_after_rampup():
    # half-life min(ema_kimg * 1000, rampup * nimg) images: 0.5 ** (batch / half_life)
    assert math.isclose(schedules.ema_beta(100_000, 64, 20.0), 0.5 ** (64 / 5000), rel_tol=1e-12)
    assert math.isclose(schedules.ema_beta(100_000, 64, 20.0, rampup=None), 0.5 ** (64 / 20_000))
    assert math.isclose(schedules.ema_beta(400_000, 64, 20.0), 0.5 ** (64 / 20_000))  # ramp done
    assert math.isclose(schedules.ema_beta(1000, 32, 10.0, rampup=0.1), 0.5 ** (32 / 100))
    # defaults (spec 7.5): ema_kimg 20, rampup 0.05; at 0 images the EMA is a plain copy
    assert math.isclose(schedules.ema_beta(10**9, 64), 0.5 ** (64 / 20_000))
    assert math.isclose(schedules.ema_beta(100_000, 64), 0.5 ** (64 / 5000))
    assert schedules.ema_beta(0, 64) == 0.0


def test_r1_gamma_and_lazy_adam_are_the_formulas():
    assert math.isclose(schedules.r1_gamma_auto(128, 32), 0.0002 * 128**2 / 32)
    lr, (b0, b1) = schedules.lazy_reg_adam(0.0025, (0.5, 0.9), 4)
    assert math.isclose(lr, 0.0025 * 4 / 5)
    assert math.isclose(b0, 0.5**0.8) and math.isclose(b1, 0.9**0.8)
    assert schedules.log2_int(256) == 8
    with pytest.raises(ValueError, match="power of two"):
        schedules.log2_int(96)


def test_blur_preserves_mean_and_is_noop_when_sigma_small():
    x = torch.randn(2, 4, 16, 16)
    assert torch.equal(blur_images(x, 0.3), x)
    const = torch.ones(1, 4, 40, 40)
    y = blur_images(const, 2.0)
    assert torch.allclose(y[..., 13:27, 13:27], const[..., 13:27, 13:27], atol=1e-5)
