"""gp3d.metrics.geometry: depth errors, image similarity and depth-distribution scores."""

import math

import pytest
import torch

from gp3d.metrics import geometry as geo

NEAR, FAR = 0.75, 1.25


def _object_depth(b: int = 3, r: int = 32, seed: int = 0) -> torch.Tensor:
    """Sphere-like objects at random places over a background at far (like the dataset)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, r), torch.linspace(-1, 1, r), indexing="ij")
    out = []
    for _ in range(b):
        cx, cy = (torch.rand(2, generator=g) - 0.5) * 0.6
        rad = 0.4 + 0.3 * torch.rand(1, generator=g)
        d2 = ((x - cx) ** 2 + (y - cy) ** 2) / rad**2
        bump = 0.85 + 0.15 * d2  # nearer in the middle
        out.append(torch.where(d2 < 1, bump, torch.full_like(bump, FAR)))
    return torch.stack(out)[:, None]


def test_perfect_reconstruction_scores_perfectly():
    true = _object_depth()
    mask = geo.foreground_mask(true, NEAR, FAR)
    assert mask.any() and not mask.all()
    assert torch.allclose(geo.abs_rel(true, true, mask), torch.zeros(3), atol=1e-7)
    assert torch.allclose(geo.si_log_rmse(true, true, mask), torch.zeros(3), atol=1e-6)
    img = torch.rand(3, 3, 32, 32) * 2 - 1
    assert torch.equal(geo.psnr(img, img), torch.full((3,), geo.PSNR_CAP))
    assert torch.allclose(geo.ssim(img, img), torch.ones(3), atol=1e-6)


def test_flat_depth_scores_badly_and_scale_invariance():
    true = _object_depth()
    mask = geo.foreground_mask(true, NEAR, FAR)
    flat = torch.full_like(true, 0.9)
    noisy = true * (1 + 0.003 * torch.randn(true.shape, generator=torch.Generator().manual_seed(1)))
    assert (geo.abs_rel(flat, true, mask) > 5 * geo.abs_rel(noisy, true, mask)).all()
    assert (geo.si_log_rmse(flat, true, mask) > 2 * geo.si_log_rmse(noisy, true, mask)).all()
    for s in (0.3, 2.0, 7.5):  # a reconstruction known up to scale scores the same at any scale
        assert torch.allclose(geo.abs_rel(noisy * s, true, mask), geo.abs_rel(noisy, true, mask))
        torch.testing.assert_close(
            geo.si_log_rmse(noisy * s, true, mask), geo.si_log_rmse(noisy, true, mask)
        )
    # without median scaling AbsRel does see the scale
    assert (geo.abs_rel(true * 2, true, mask, median_scaling=False) > 0.99).all()
    # the mask matters: only foreground errors count
    wrong_bg = torch.where(mask, true, torch.full_like(true, 0.8))
    assert torch.allclose(geo.abs_rel(wrong_bg, true, mask), torch.zeros(3), atol=1e-7)


def test_image_scores_order_by_corruption_and_reject_bad_shapes():
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    g = torch.Generator().manual_seed(0)
    small, large = (img + s * torch.randn(img.shape, generator=g) for s in (0.05, 0.4))
    assert (geo.psnr(small, img) > geo.psnr(large, img)).all()
    assert (geo.ssim(small, img) > geo.ssim(large, img)).all()
    mse = ((small.clamp(-1, 1) - img) ** 2).flatten(1).mean(1)  # PSNR's definition, range 2
    torch.testing.assert_close(geo.psnr(small, img), 10 * torch.log10(4 / mse), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        geo.psnr(img[:, :1], img[:, :1])


def test_lpips_distance_is_zero_for_identical_images():
    from gp3d.metrics.lpips import build_lpips

    lp = build_lpips(pretrained=False)
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(geo.lpips_distance(lp, img, img), torch.zeros(2), atol=1e-6)
    assert (geo.lpips_distance(lp, img, -img) > 0).all()


def test_depth_distribution_scores():
    true = _object_depth(8, seed=0)
    same = geo.depth_distribution_scores(true, true, NEAR, FAR)
    assert same["depth_w1"] == 0.0
    assert same["foreground_fraction"] == same["foreground_fraction_true"] > 0
    other = geo.depth_distribution_scores(_object_depth(8, seed=1), true, NEAR, FAR)
    flat = geo.depth_distribution_scores(torch.full_like(true, 0.9), true, NEAR, FAR)
    empty = geo.depth_distribution_scores(torch.full_like(true, FAR), true, NEAR, FAR)
    assert 0 < other["depth_w1"] < flat["depth_w1"]  # a billboard is far from the data
    assert 0 < other["depth_w1"] < empty["depth_w1"]
    assert flat["depth_spread"] == flat["relief"] == 0.0 < same["depth_spread"]
    assert flat["foreground_fraction"] == 1.0 and empty["foreground_fraction"] == 0.0


def test_wasserstein1_of_shifted_samples_is_the_shift():
    x = torch.rand(10_000, generator=torch.Generator().manual_seed(0))
    assert math.isclose(geo.wasserstein1(x + 0.25, x), 0.25, rel_tol=1e-6)
