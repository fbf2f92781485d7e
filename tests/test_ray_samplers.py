"""Ray sampling maths (spec 2.3, 2.4): the counter-based jitter hash against a plain-integer
reference, stratified bins with known jitter, and the inverse-CDF edge cases."""

import torch

from gp3d.models.ray_samplers import (
    _mix32,
    _mul32,
    ray_uniforms,
    sample_pdf,
    stratified_samples,
)

M32 = 0xFFFFFFFF


def _lowbias32(x: int) -> int:
    """The published "lowbias32" finaliser in Python's unbounded ints (the oracle)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def _uniforms_ref(seed: int, stream: int, ray_id: int, num: int) -> list[float]:
    key = _lowbias32((seed * 7919 + stream) & M32)
    out = []
    for j in range(num):
        index = ray_id * num + j
        h = _lowbias32(_lowbias32((index & M32) ^ key) ^ (index >> 32))
        out.append(((h >> 8) + 0.5) / (1 << 24))
    return out


def test_mul32_and_mix32_match_plain_integer_maths():
    g = torch.Generator().manual_seed(0)
    xs = torch.randint(0, 2**32, (200,), generator=g, dtype=torch.int64)
    xs = torch.cat([xs, torch.tensor([0, 1, 0xFFFF, 0x10000, M32])])
    for k in (0x7FEB352D, 0x846CA68B, 3):
        assert _mul32(xs, k).tolist() == [(x * k) & M32 for x in xs.tolist()]
    assert _mix32(xs).tolist() == [_lowbias32(x) for x in xs.tolist()]


def test_ray_uniforms_are_the_documented_hash():
    # Seeded renders must not change between versions: every value is a pure function of
    # (seed, stream, ray id, sample index), including ids whose index passes 2^32.
    ids = torch.tensor([0, 1, 7, 123456, 2**30 + 5, 2**33 + 1])
    for seed, stream in ((0, 0), (3, 1), (2**40 + 1, 2)):
        got = ray_uniforms(seed, stream, ids, 4)
        want = torch.tensor([_uniforms_ref(seed, stream, i, 4) for i in ids.tolist()])
        assert torch.equal(got, want)


def test_ray_uniforms_in_open_interval_chunk_independent_and_distinct():
    ids = torch.arange(4096).reshape(64, 64)
    u = ray_uniforms(5, 0, ids, 3)
    assert u.shape == (64, 64, 3)
    assert (u > 0).all() and (u < 1).all()
    assert torch.equal(ray_uniforms(5, 0, ids[10:20, 3:9], 3), u[10:20, 3:9])  # any chunking
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005
    assert u.unique().numel() > 0.99 * u.numel()  # a 24-bit grid: a few birthday collisions
    assert u.min() < 1e-3 and u.max() > 1 - 1e-3  # fills (0, 1)
    # seed and stream both matter, and are not interchangeable
    others = [ray_uniforms(s, t, ids, 3) for s, t in ((5, 1), (6, 0), (0, 5))]
    assert all(not torch.equal(u, o) for o in others)
    # ids whose low 32 bits of id * num coincide still differ (num = 4: ids 2^30 apart)
    far = ray_uniforms(5, 0, torch.tensor([9, 9 + 2**30]), 4)
    assert not torch.equal(far[0], far[1])


def test_stratified_bins_from_known_jitter():
    # N = 5: s = 0 .25 .5 .75 1, midpoints .125 .375 .625 .875 (spec 2.3 bins)
    lower = torch.tensor([0.0, 0.125, 0.375, 0.625, 0.875])
    upper = torch.tensor([0.125, 0.375, 0.625, 0.875, 1.0])
    for fill in (0.0, 0.5, 1.0):
        got = stratified_samples((2,), 5, u=torch.full((2, 5), fill))
        torch.testing.assert_close(got, (lower + fill * (upper - lower)).expand(2, 5))
    torch.manual_seed(0)
    s = stratified_samples((3, 2), 5)
    assert s.shape == (3, 2, 5)
    assert ((s >= lower) & (s <= upper)).all()


def test_sample_pdf_flat_bin_rule_and_zero_uniform():
    # EG3D's rule: a bin whose cdf step is below eps is taken as step 1, so a uniform that
    # lands in a near-empty bin stays at that bin's left edge instead of spreading across it.
    bins = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    weights = torch.tensor([[5.0, 0.0, 5.0]], dtype=torch.float64)
    eps = 1e-5
    cdf1 = 5.00001 / 10.00003  # cdf at the end of bin 0
    u = torch.tensor([[cdf1 + 2.0e-7]], dtype=torch.float64)  # inside the 1e-6-wide bin 1
    s = sample_pdf(bins, weights, 1, u=u, eps=eps)
    torch.testing.assert_close(s, torch.tensor([[1.0 + 2.0e-7]], dtype=torch.float64))
    # u = 0 (torch.rand can return it) must not land in an empty leading bin
    s0 = sample_pdf(bins, torch.tensor([[0.0, 1.0, 1.0]], dtype=torch.float64), 1, u=u * 0, eps=0)
    assert s0.item() == 1.0
    # u = 1 (ray_uniforms' float32 rounding can return it) takes the last edge, not an error
    for w in (weights, weights.float()):
        last = sample_pdf(bins.to(w), w, 1, u=torch.ones(1, 1, dtype=w.dtype), eps=eps)
        assert last.item() == 3.0
    # u just below 1 stays inside the last bin
    s1 = sample_pdf(bins, weights, 1, u=torch.full_like(u, 1 - 1e-9), eps=eps)
    assert 2.99 < s1.item() <= 3.0


def test_sample_pdf_normalises_each_ray_over_any_leading_dims():
    # [2, 3] rays of 5 bins: the same as the flattened [6] rays, and each ray's pdf is its own
    # (scaling one ray's weights, with eps = 0, moves none of the samples)
    g = torch.Generator().manual_seed(1)
    bins = torch.sort(torch.rand(2, 3, 6, generator=g, dtype=torch.float64), dim=-1).values
    weights = torch.rand(2, 3, 5, generator=g, dtype=torch.float64)
    u = torch.rand(2, 3, 4, generator=g, dtype=torch.float64)
    got = sample_pdf(bins, weights, 4, u=u, eps=0.0)
    flat = sample_pdf(bins.reshape(6, 6), weights.reshape(6, 5), 4, u=u.reshape(6, 4), eps=0.0)
    torch.testing.assert_close(got, flat.reshape(2, 3, 4))
    scaled = weights * torch.tensor([1.0, 10.0, 1000.0], dtype=torch.float64)[:, None]
    torch.testing.assert_close(sample_pdf(bins, scaled, 4, u=u, eps=0.0), got)
    assert ((got >= bins[..., :1]) & (got <= bins[..., -1:])).all()


def test_unseeded_draws_are_one_uniform_per_sample_in_the_pdf_dtype():
    # Without u, sample_pdf and stratified_samples take torch.rand of the output's shape (and,
    # for sample_pdf, the weights' dtype) from the global RNG: a seeded run replays exactly and
    # every ray gets its own jitter.
    bins = torch.linspace(0, 1, 6, dtype=torch.float64).expand(2, 3, 6)
    weights = torch.ones(2, 3, 5, dtype=torch.float64)
    torch.manual_seed(7)
    drawn = sample_pdf(bins, weights, 4)
    torch.manual_seed(7)
    u = torch.rand(2, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(drawn, sample_pdf(bins, weights, 4, u=u), rtol=0, atol=0)
    assert not torch.equal(drawn[0, 0], drawn[1, 2])
    torch.manual_seed(7)
    s = stratified_samples((2, 3), 5)
    torch.manual_seed(7)
    torch.testing.assert_close(s, stratified_samples((2, 3), 5, u=torch.rand(2, 3, 5)))
    assert not torch.equal(s[0, 0], s[1, 2])


def test_sample_pdf_at_u_one_never_leaves_the_last_bin():
    # float32 round-off leaves the cdf's last value a few ulp above or below 1 (here 12 of 64
    # rays below, 3 above); u = 1 must still map inside [first edge, last edge] on every ray
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(64, 7, generator=g)
    bins = torch.linspace(0, 1, 8).expand(64, 8)
    s = sample_pdf(bins, weights, 1, u=torch.ones(64, 1))
    assert (s <= 1.0).all() and (s > 1 - 1 / 7).all()
