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
