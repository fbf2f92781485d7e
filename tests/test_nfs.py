import math

import pytest
import torch

from gp3d.metrics.nfs import depth_histograms, mean_non_flatness_score, non_flatness_score

NEAR, FAR = 0.75, 1.25


def test_constant_depth_is_one():
    depth = torch.full((3, 1, 16, 16), 1.0)
    torch.testing.assert_close(non_flatness_score(depth, NEAR, FAR), torch.ones(3))


def test_even_spread_over_all_bins_is_num_bins():
    centres = NEAR + (torch.arange(64) + 0.5) * (FAR - NEAR) / 64
    depth = centres.repeat(4).reshape(1, 16, 16)  # 4 pixels in each of the 64 bins, [B, H, W]
    assert non_flatness_score(depth, NEAR, FAR).item() == pytest.approx(64.0, abs=1e-3)


def test_clamping_range_and_mean():
    flat = torch.full((1, 1, 8, 8), 5.0)  # beyond far: clamped into the last bin
    two = torch.cat([torch.full((1, 1, 8, 4), NEAR), torch.full((1, 1, 8, 4), FAR)], dim=3)
    scores = non_flatness_score(torch.cat([flat, two]), NEAR, FAR)
    torch.testing.assert_close(scores, torch.tensor([1.0, 2.0]))
    noise = NEAR + (FAR - NEAR) * torch.rand(
        5, 1, 32, 32, generator=torch.Generator().manual_seed(0)
    )
    s = non_flatness_score(noise, NEAR, FAR, num_bins=16)
    assert torch.all(s >= 1) and torch.all(s <= 16)
    assert mean_non_flatness_score(noise, NEAR, FAR, 16) == pytest.approx(s.mean().item())
    assert math.isfinite(mean_non_flatness_score(noise, NEAR, FAR))


def test_compute_nfs_is_seeded_and_leaves_the_callers_rng_alone(tmp_path):
    """Prior fov / look-at, ray jitter and noise come from the seed, not the global RNG: the
    value repeats (and agrees across DDP ranks) and training randomness is not shifted."""
    from gp3d.callbacks.nfs import compute_nfs
    from tests.tiny_generator import tiny_generator

    G = tiny_generator(tmp_path).G
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = compute_nfs(G, num_samples=3, resolution=8, batch_size=2, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # a different caller state must not matter
    assert compute_nfs(G, num_samples=3, resolution=8, batch_size=2, seed=5) == a
    assert 1.0 <= a <= 64.0


def test_depth_histograms_count_pixels_per_bin():
    depth = torch.tensor([[[0.5, 0.8, 0.8, 1.3]]])  # clamped to [0.75, 1.25]: 0.75, 0.8, 0.8, 1.25
    h = depth_histograms(depth, 0.75, 1.25, num_bins=2)
    torch.testing.assert_close(h, torch.tensor([[3.0, 1.0]]))
    p = h / 4  # NFS = exp(entropy) of these counts
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert abs(non_flatness_score(depth, 0.75, 1.25, num_bins=2).item() - expected) < 1e-5
    assert torch.equal(p.sum(), torch.tensor(1.0))


def test_mean_score_uses_64_bins_and_averages_images():
    # spec 8.2: 64 bins over [near, far]; one image spread evenly over all 64 (NFS 64) and one
    # flat (NFS 1) average to 32.5
    centres = NEAR + (torch.arange(64) + 0.5) * (FAR - NEAR) / 64
    even = centres.repeat(4).reshape(1, 1, 16, 16)
    depth = torch.cat([even, torch.full_like(even, 1.0)])
    assert mean_non_flatness_score(depth, NEAR, FAR) == pytest.approx(32.5, abs=1e-3)
    assert depth_histograms(depth, NEAR, FAR).shape == (2, 64)
    assert depth_histograms(depth, NEAR, FAR)[0].tolist() == [4.0] * 64
    noise = NEAR + (FAR - NEAR) * torch.rand(
        2, 1, 32, 32, generator=torch.Generator().manual_seed(1)
    )
    assert mean_non_flatness_score(noise, NEAR, FAR) == pytest.approx(
        non_flatness_score(noise, NEAR, FAR, 64).mean().item()
    )
    torch.testing.assert_close(
        non_flatness_score(noise, NEAR, FAR), non_flatness_score(noise, NEAR, FAR, 64)
    )
    assert not torch.allclose(
        non_flatness_score(noise, NEAR, FAR, 63), non_flatness_score(noise, NEAR, FAR, 64)
    )
