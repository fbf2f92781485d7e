"""FID / KID / IS / precision-recall maths against direct and independent implementations."""

import numpy as np
import pytest
import scipy.linalg
import torch

from gp3d.metrics.feature_net import load_feature_network
from gp3d.metrics.fid import (
    FeatureStats,
    fid_from_stats,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)
from gp3d.metrics.precision_recall import knn_radii, precision_recall


def _features(n, d, seed, shift=0.0, scale=1.0):
    mix = torch.randn(d, d, generator=torch.Generator().manual_seed(1234)) / d**0.5  # correlated
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen) @ mix) * scale + shift


def _scipy_fid(x: np.ndarray, y: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_of_a_set_with_itself_is_zero():
    x = _features(400, 32, 0)
    s = FeatureStats.of(x)
    assert abs(fid_from_stats(s, s)) < 1e-8
    assert fid_from_stats(s, FeatureStats.of(x + 0.5)) == pytest.approx(32 * 0.25, rel=1e-9)


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.3, 1.5), (1.0, 0.5)])
def test_fid_matches_direct_scipy_computation(shift, scale):
    x, y = _features(500, 48, 1), _features(300, 48, 2, shift, scale)
    ours = fid_from_stats(FeatureStats.of(x), FeatureStats.of(y))
    ref = _scipy_fid(x.double().numpy(), y.double().numpy())
    assert ours == pytest.approx(ref, rel=1e-3)
    assert ours > 0


def test_stats_merge_equals_whole_and_mean_cov_match_numpy():
    x = _features(90, 8, 3)
    merged = FeatureStats.of(x[:17]).merge(FeatureStats.of(x[17:50])).merge(FeatureStats.of(x[50:]))
    whole = FeatureStats.of(x)
    assert merged.n == 90
    np.testing.assert_allclose(merged.mean, x.double().mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(merged.cov, np.cov(x.double().numpy(), rowvar=False), atol=1e-12)
    np.testing.assert_allclose(merged.cov, whole.cov, atol=1e-12)
    with pytest.raises(ValueError, match="features"):
        whole.update(torch.zeros(3, 9))
    with pytest.raises(ValueError, match="same feature network"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_fid_agrees_with_torchmetrics_on_the_same_network():
    """torchmetrics' FrechetInceptionDistance with our network plugged in (feature=Module)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    net = load_feature_network("random:16")
    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (64, 3, 24, 24), dtype=torch.uint8, generator=gen)
    fake = (real.float() * 0.7 + 30).to(torch.uint8)
    tm = FrechetInceptionDistance(feature=net)
    tm.update(real, real=True)
    tm.update(fake, real=False)
    ours = fid_from_stats(FeatureStats.of(net(real)), FeatureStats.of(net(fake)))
    assert ours == pytest.approx(float(tm.compute()), rel=1e-3)


def test_kid_matches_torchmetrics_and_is_near_zero_for_same_distribution():
    from torchmetrics.image.kid import KernelInceptionDistance

    x, y = _features(60, 12, 4), _features(60, 12, 5, shift=0.4)
    ours = kernel_inception_distance(x, y, num_subsets=1, max_subset_size=60)
    tm = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=1, subset_size=60)
    tm.update(x, real=True)  # Identity feature: the "images" are already features
    tm.update(y, real=False)
    assert ours == pytest.approx(float(tm.compute()[0]), rel=1e-3)
    same = kernel_inception_distance(_features(500, 12, 6), _features(500, 12, 7), 20, 200)
    assert abs(same) < 0.1 * ours


def test_inception_score_limits_and_torchmetrics():
    from torchmetrics.image.inception import InceptionScore

    k = 7
    assert inception_score(torch.zeros(70, k), num_splits=1)[0] == pytest.approx(1.0)
    confident = torch.eye(k).repeat(10, 1) * 50  # every class equally often, each certain
    assert inception_score(confident, num_splits=1)[0] == pytest.approx(k, rel=1e-6)
    logits = torch.randn(80, k, generator=torch.Generator().manual_seed(0)) * 3
    tm = InceptionScore(feature=torch.nn.Identity(), splits=1)
    tm.update(logits)
    assert inception_score(logits, num_splits=1)[0] == pytest.approx(float(tm.compute()[0]), 1e-3)
    mean, std = inception_score(logits, num_splits=4)
    assert 1.0 <= mean <= k and std >= 0


def test_precision_recall_limits_and_hand_example():
    x = _features(200, 6, 8)
    assert precision_recall(x, x.clone(), k=3) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0, k=3) == (0.0, 0.0)
    # reals on a line at 0, 1, 2, 3: 1st-NN radius is 1 everywhere (k=1)
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    assert knn_radii(real, k=1).tolist() == [1.0, 1.0, 1.0, 1.0]
    # fakes: 3.5 is within 1 of 3 (inside), 10 is outside -> precision 1/2. Fake radii (k=1):
    # 6.5 each, so every real is within 6.5 of the fake at 3.5 -> recall 1.
    fake = torch.tensor([[3.5], [10.0]])
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)
    # mode collapse: 200 fakes around 5 reals -> full precision, recall about 5/200
    collapsed = x[:5].repeat(40, 1) + 1e-4 * torch.randn(200, 6)
    p, r = precision_recall(x, collapsed, k=3)
    assert p == 1.0 and r == pytest.approx(5 / 200, abs=0.01)


# --- hand-computed cases (spec 8.1), each with a closed form -------------------------------------


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_frechet_distance_closed_form_for_commuting_covariances():
    # S1, S2 diagonal: Tr(S1 + S2 - 2 (S1 S2)^(1/2)) = sum (sqrt a - sqrt b)^2, here 1 + 1 + 9;
    # ||dmu||^2 = 1 + 4 + 4. A common rotation of both distributions changes nothing.
    mu1, mu2 = np.array([1.0, 2.0, 2.0]), np.zeros(3)
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 0.0])
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(20.0, abs=1e-9)
    r = _rotation(3, 0)
    rotated = frechet_distance(r @ mu1, r @ s1 @ r.T, r @ mu2, r @ s2 @ r.T)
    assert rotated == pytest.approx(20.0, abs=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_rank_deficient_covariances_is_finite():
    # Rank-1 covariances in a rotated basis: eigh returns round-off eigenvalues around 0 that
    # must be clipped, not square-rooted into nan. sigma_i = c_i v v^T -> (sqrt c1 - sqrt c2)^2.
    v = _rotation(4, 1)[:, :1]
    s1, s2 = 4.0 * v @ v.T, 9.0 * v @ v.T
    mu = np.zeros(4)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(1.0, abs=1e-7)
    assert frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-7)


def test_frechet_distance_of_float32_statistics_is_computed_in_float64():
    # statistics saved as float32 (an .npz cache, a reference file) give the float64 result of
    # the same values, not a float32 eigendecomposition
    x, y = _features(300, 16, 11), _features(300, 16, 12, shift=0.2, scale=1.3)
    stats = [FeatureStats.of(f) for f in (x, y)]
    f32 = [v.astype(np.float32) for s in stats for v in (s.mean, s.cov)]
    assert frechet_distance(*f32) == frechet_distance(*[v.astype(np.float64) for v in f32])


def test_frechet_distance_rejects_each_kind_of_shape_mismatch():
    good = (np.zeros(3), np.eye(3))
    for bad in (
        (np.zeros(3), np.eye(3), np.zeros(4), np.eye(3)),  # means differ
        (np.zeros(3), np.eye(3), np.zeros(3), np.eye(4)),  # covariances differ
        (np.zeros(3), np.eye(4), np.zeros(3), np.eye(4)),  # covariance not [D, D] of the mean
    ):
        with pytest.raises(ValueError, match="same feature network"):
            frechet_distance(*bad)
    assert frechet_distance(*good, *good) == pytest.approx(0.0)


def test_feature_stats_need_enough_vectors_and_reject_bad_shapes():
    one = FeatureStats.of(torch.tensor([[1.0, 2.0]]))
    np.testing.assert_array_equal(one.mean, [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 feature vectors, have 1"):
        _ = one.cov
    with pytest.raises(ValueError, match="at least 1 feature vectors, have 0"):
        _ = FeatureStats.empty(2).mean
    two = FeatureStats.of(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    np.testing.assert_allclose(two.cov, [[2.0, 4.0], [4.0, 8.0]])  # unbiased: / (n - 1)
    assert two.mean.dtype == np.float64 and two.total.dtype == torch.float64
    with pytest.raises(ValueError, match=r"expected features \[B, 2\], got \(2, 2, 1\)"):
        two.update(torch.zeros(2, 2, 1))  # right size in dim 1, but not [B, D]


def test_kid_unbiased_estimator_by_hand():
    # d = 2, reals {(0,0), (1,1)}, fakes {(1,1), (2,2)}: x.y / d is 0, 1, 2 as in 1-D {0,1} vs
    # {1,2}. k = (x.y/d + 1)^3: k_xx(off) = 1, k_yy(off) = 27, k_xy = {1, 1, 8, 27}.
    # unbiased MMD^2 = 1 + 27 - 2 * 37 / 4 = 9.5 (all points in the one subset: m = n = 2).
    real = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    fake = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    assert kernel_inception_distance(real, fake, num_subsets=1) == pytest.approx(9.5)
    assert kernel_inception_distance(real, fake, num_subsets=3) == pytest.approx(9.5)
    # subsets of m = 2 from sets of identical points: the same value whatever is drawn,
    # k(a,a) + k(b,b) - 2 k(a,b) with a = (1,0), b = (0,2): 1.5^3 + 3^3 - 2 * 1
    a, b = torch.tensor([[1.0, 0.0]]).repeat(3, 1), torch.tensor([[0.0, 2.0]]).repeat(5, 1)
    assert kernel_inception_distance(a, b, num_subsets=4, max_subset_size=2) == pytest.approx(
        1.5**3 + 27 - 2
    )


def test_kid_input_checks_and_defaults():
    x = torch.zeros(4, 3)
    for real, fake in ((x[0], x), (x, x[0]), (x, torch.zeros(4, 2))):
        with pytest.raises(ValueError, match=r"\[N, D\] features of one network"):
            kernel_inception_distance(real, fake)
    for real, fake, size in ((x[:1], x, 1000), (x, x[:1], 1000), (x, x, 1)):
        with pytest.raises(
            ValueError, match="^KID needs at least 2 real and 2 fake feature vectors$"
        ):
            kernel_inception_distance(real, fake, max_subset_size=size)
    # the StyleGAN-ADA protocol: 100 subsets of up to 1000 vectors, seed 0 (checked where the
    # subsets differ: fewer than n vectors per subset)
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(7, 2, generator=g), torch.randn(6, 2, generator=g) + 0.5
    explicit = kernel_inception_distance(real, fake, num_subsets=100, max_subset_size=3, seed=0)
    assert kernel_inception_distance(real, fake, max_subset_size=3) == explicit
    assert kernel_inception_distance(real, fake, num_subsets=99, max_subset_size=3) != explicit
    real, fake = torch.randn(1001, 2, generator=g), torch.randn(1001, 2, generator=g) + 0.5
    one = kernel_inception_distance(real, fake, num_subsets=1)
    assert one == kernel_inception_distance(real, fake, num_subsets=1, max_subset_size=1000)
    assert one != kernel_inception_distance(real, fake, num_subsets=1, max_subset_size=1001)


def test_inception_score_splits_in_order_with_population_std():
    # 20 samples, 2 classes: the first 10 uniform (each split scores 1), the last 10 alternate
    # confident predictions (each split of 2 holds both classes: exp(log 2) = 2). The default is
    # the original's 10 splits; mean and (ddof 0) std over splits.
    logits = torch.cat([torch.zeros(10, 2), torch.eye(2).repeat(5, 1) * 60])
    mean, std = inception_score(logits)
    assert mean == pytest.approx(1.5, rel=1e-9) and std == pytest.approx(0.5, rel=1e-9)
    mean2, std2 = inception_score(logits, num_splits=2)
    assert mean2 == pytest.approx(1.5, rel=1e-9) and std2 == pytest.approx(0.5, rel=1e-9)
    # as many splits as samples is allowed (each split is one sample: IS 1); fewer samples not
    assert inception_score(logits, num_splits=20) == pytest.approx((1.0, 0.0))
    with pytest.raises(ValueError, match="19 samples cannot be split 20 ways"):
        inception_score(logits[:19], num_splits=20)
    # a class that no sample predicts (p ~ e^-120 everywhere: common with 1000 ImageNet classes
    # and few samples) adds nothing: each sample is sure of one of two classes -> IS 2
    unseen = torch.tensor([[60.0, 0.0, -60.0], [0.0, 60.0, -60.0]]).repeat(5, 1)
    assert inception_score(unseen, num_splits=1) == pytest.approx((2.0, 0.0))


def test_precision_recall_boundary_batches_and_checks():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    # a fake exactly on a ball's boundary (distance 1 from 3, radius 1) is inside
    assert precision_recall(real, torch.tensor([[4.0], [5.5]]), k=1)[0] == 0.5
    # k = 3 is the default (pr50k3); with k = 3 the radius of 0 is 3, so 6 is just inside it
    # from 3 and 6.5 is outside every ball
    assert knn_radii(real).tolist() == [3.0, 2.0, 2.0, 3.0]
    assert precision_recall(real, torch.tensor([[6.0], [6.5], [-3.0], [-3.5]]))[0] == 0.5
    # row batches only bound memory: any batch size gives the same radii and coverage
    x = _features(37, 4, 9)
    torch.testing.assert_close(knn_radii(x, 3, row_batch=5), knn_radii(x, 3))
    y = _features(23, 4, 10, shift=0.3)
    assert precision_recall(x, y, 3, row_batch=4) == precision_recall(x, y, 3)
    with pytest.raises(ValueError, match="more than k=3 feature vectors, got 3"):
        knn_radii(real[:3])
    assert knn_radii(real, k=3).shape == (4,)
    for a, b in ((real[0], real), (real, real[0]), (real, torch.zeros(4, 2))):
        with pytest.raises(ValueError, match=r"\[N, D\] features of one network"):
            precision_recall(a, b)
