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


# --- hand-computed cases (module docstring definitions) -----------------------------------------


def _row(*values: float) -> torch.Tensor:
    """A [1, 1, 1, W] depth map."""
    return torch.tensor(values)[None, None, None]


def test_foreground_mask_threshold_and_non_finite_depth():
    # foreground: finite and nearer than far - 0.01 (far - near) = 1.245 here
    depth = _row(0.8, 1.2449, 1.245, 1.25, float("nan"), float("inf"), -float("inf"))
    want = [True, True, False, False, False, False, False]
    assert geo.foreground_mask(depth, NEAR, FAR).flatten().tolist() == want


def test_abs_rel_and_median_scaling_by_hand():
    # mask the first three pixels; the fourth (off the mask) is wild and must not count
    true = _row(1.0, 2.0, 4.0, 1.0)
    pred = _row(1.0, 1.0, 1.0, 100.0)
    mask = _row(1, 1, 1, 0).bool()
    # median scaling: s = median(1, 2, 4) / median(1, 1, 1) = 2 -> pred 2, 2, 2:
    # |2 - 1| / 1, 0, |2 - 4| / 4 -> mean 0.5
    torch.testing.assert_close(geo.median_scale(pred, true, mask), torch.tensor([2.0]))
    torch.testing.assert_close(geo.abs_rel(pred, true, mask), torch.tensor([0.5]))
    # unscaled: 0, 1/2, 3/4 -> 5/12
    torch.testing.assert_close(
        geo.abs_rel(pred, true, mask, median_scaling=False), torch.tensor([5 / 12])
    )
    # per image: a second image with its own scale and mask, and an empty mask gives nan
    true2 = torch.cat([true, _row(3.0, 3.0, 3.0, 3.0), true])
    pred2 = torch.cat([pred, _row(9.0, 1.0, 1.0, 1.0), pred])
    mask2 = torch.cat([mask, _row(1, 1, 1, 1).bool(), _row(0, 0, 0, 0).bool()])
    scale = geo.median_scale(pred2, true2, mask2)
    torch.testing.assert_close(scale[:2], torch.tensor([2.0, 3.0]))
    assert scale[2].isnan()
    got = geo.abs_rel(pred2, true2, mask2)
    torch.testing.assert_close(got[:2], torch.tensor([0.5, 2.0]))  # 27, 3, 3, 3: (8+0+0+0) / 4
    assert got[2].isnan() and got.dtype == torch.float32


def test_depth_pairs_must_share_a_4d_shape():
    d = _row(1.0, 2.0)
    m = d > 0
    for pred, true, mask in ((d[0], d[0], m[0]), (d, d[..., :1], m), (d, d, m[..., :1])):
        for fn in (geo.abs_rel, geo.si_log_rmse):
            with pytest.raises(ValueError, match=r"must all be \[B, 1, H, W\]"):
                fn(pred, true, mask)


def test_si_log_rmse_by_hand_and_positivity_on_the_mask():
    # d = log(pred / true) = (0, log 2) on the mask: sqrt(mean d^2 - mean(d)^2) = log(2) / 2
    true = _row(1.0, 1.0, 5.0)
    pred = _row(1.0, 2.0, -1.0)  # the negative depth is off the mask: allowed
    mask = _row(1, 1, 0).bool()
    got = geo.si_log_rmse(pred, true, mask)
    torch.testing.assert_close(got, torch.tensor([math.log(2) / 2]))
    assert got.dtype == torch.float32
    # a constant ratio is a pure scale: 0, never nan (round-off makes mean(d^2) - mean(d)^2
    # about -2e-16 for these depths, which must be clamped before the square root)
    t = 0.8 + 0.4 * torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert geo.si_log_rmse(t * 4, t, torch.ones_like(t, dtype=torch.bool)).item() == 0.0
    for bad_pred, bad_true in ((_row(0.0, 1.0, 1.0), true), (true, _row(1.0, 0.0, 1.0))):
        with pytest.raises(ValueError, match="^si-log RMSE needs positive depths on the mask$"):
            geo.si_log_rmse(bad_pred, bad_true, mask)


def test_ssim_and_psnr_of_constant_images_by_hand():
    # SSIM of constant images a, b: the luminance term (2ab + C1) / (a^2 + b^2 + C1) with
    # C1 = (0.01 L)^2, L = 2 (images in [-1, 1])
    a, b = 0.5, -0.5
    img_a, img_b = torch.full((2, 3, 16, 16), a), torch.full((2, 3, 16, 16), b)
    c1 = (0.01 * 2) ** 2
    want = (2 * a * b + c1) / (a * a + b * b + c1)
    torch.testing.assert_close(geo.ssim(img_a, img_b), torch.full((2,), want))
    # values past either end are clamped first: 2 -> 1 against -0.5, and -2 -> -1 against 0.5
    # both give 2ab = -1, a^2 + b^2 = 1.25, mse = 1.5^2
    one = (-1 + c1) / (1.25 + c1)
    psnr_one = 10 * math.log10(4 / 1.5**2)  # PSNR = 10 log10(L^2 / mse), one value per image
    for pred, target in (
        (img_a * 4, img_b),
        (img_b, img_a * 4),
        (-4 * img_a, img_a),
        (img_a, -4 * img_a),
    ):
        torch.testing.assert_close(geo.ssim(pred, target), torch.full((2,), one))
        torch.testing.assert_close(geo.psnr(pred, target), torch.full((2,), psnr_one))
    two = torch.cat([img_a[:1], img_b[:1]])
    torch.testing.assert_close(
        geo.psnr(two, img_a), torch.tensor([geo.PSNR_CAP, 10 * math.log10(4)])
    )
    assert geo.psnr(img_a, img_a, cap=50.0).tolist() == [50.0, 50.0]
    with pytest.raises(ValueError, match=r"two \[B, 3, H, W\] batches"):
        geo.ssim(img_a, img_a[:1])
    with pytest.raises(ValueError, match=r"two \[B, 3, H, W\] batches"):
        geo.psnr(img_a[0], img_a[0])


def test_normalised_depth_maps_near_far_and_non_finite_values():
    depth = _row(NEAR, 1.0, FAR, 2.0, 0.5, float("nan"), float("inf"), -float("inf"))
    want = [0.0, 0.5, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert geo.normalised_depth(depth, NEAR, FAR).flatten().tolist() == want


def test_wasserstein1_small_cases_and_subsampling():
    # {0, 1} vs {0}: the quantile function of {0, 1} is q on the midpoint grid -> mean 0.5
    assert geo.wasserstein1(torch.tensor([0.0, 1.0]), torch.zeros(1), num_quantiles=4) == 0.5
    assert geo.wasserstein1(torch.zeros(1), torch.tensor([0.0, 1.0]), num_quantiles=4) == 0.5
    # quantiles on the midpoint grid: (0.5 ... n - 0.5) / n, not (0 ... n - 1) / n
    assert geo.wasserstein1(torch.tensor([0.0, 1.0]), torch.zeros(1), num_quantiles=1) == 0.5
    x = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert geo.wasserstein1(x, torch.full((3,), 1.5), num_quantiles=2) == pytest.approx(0.75)
    for a, b in ((torch.zeros(0), x), (x, torch.zeros(0))):
        with pytest.raises(ValueError, match="^Wasserstein-1 needs two non-empty samples$"):
            geo.wasserstein1(a, b)
    # over the limit: an evenly strided subset, ceil(n / max) apart, from the first value
    assert geo._subsample(torch.arange(10.0), max_items=4).tolist() == [0.0, 3.0, 6.0, 9.0]
    assert geo._subsample(torch.arange(8.0), max_items=4).tolist() == [0.0, 2.0, 4.0, 6.0]
    assert geo._subsample(torch.arange(4.0), max_items=4).tolist() == [0.0, 1.0, 2.0, 3.0]


def test_depth_statistics_by_hand():
    # near 0, far 1: normalised depth = depth; foreground = depth < 0.99
    depth = torch.tensor([[0.2, 0.4, 1.0, 1.0], [0.5, 1.0, 1.0, 1.0]])[:, None, None]
    stats = geo.depth_statistics(depth, 0.0, 1.0)
    assert stats["foreground_fraction"] == pytest.approx(3 / 8)
    spread = (depth[0].flatten().std() + depth[1].flatten().std()) / 2  # unbiased, per image
    assert stats["depth_spread"] == pytest.approx(spread.item())
    # relief: only images with 2+ foreground pixels count (the second has one)
    assert stats["relief"] == pytest.approx(torch.tensor([0.2, 0.4]).std().item())
    scores = geo.depth_distribution_scores(depth[:1], depth, 0.0, 1.0)
    assert scores["relief_true"] == stats["relief"]
    assert scores["depth_spread_true"] == stats["depth_spread"]
    assert scores["foreground_fraction"] == 0.5 and scores["foreground_fraction_true"] == 3 / 8
    assert scores["depth_w1"] > 0
    assert set(scores) == {"depth_w1"} | {k + s for k in stats for s in ("", "_true")}
    # no image with two foreground pixels: relief 0 (no shape to measure), not nan
    assert geo.depth_statistics(depth.clamp(min=0.995), 0.0, 1.0)["relief"] == 0.0
