import torch

from gp3d.models.compositing import composite, transmittance
from gp3d.models.ray_samplers import importance_samples, sample_pdf, stratified_samples
from gp3d.models.renderer import VolumeRenderer


def test_stratified_samples_sorted_and_in_bins():
    s = stratified_samples((5, 7), 16)
    assert s.shape == (5, 7, 16)
    assert (s >= 0).all() and (s <= 1).all()
    assert (s[..., 1:] >= s[..., :-1]).all()
    assert not torch.allclose(s[0, 0], s[1, 0])  # jittered


def test_opaque_first_sample_gives_its_colour_and_depth():
    t = torch.linspace(0.8, 1.2, 10).expand(3, 10)
    sigma = torch.zeros(3, 10, 1)
    sigma[:, 0] = 1e6
    rgb = torch.rand(3, 10, 3)
    out_rgb, depth, opacity, w = composite(rgb, sigma, t)
    assert torch.allclose(out_rgb, rgb[:, 0], atol=1e-5)
    assert torch.allclose(depth[:, 0], t[:, 0], atol=1e-5)
    assert torch.allclose(opacity, torch.ones(3, 1), atol=1e-5)


def test_empty_ray_takes_last_sample_background():
    # spec 14.1: sigma = 0 everywhere except the last sample (infinite delta)
    t = torch.linspace(0.75, 1.25, 8)[None]
    sigma = torch.zeros(1, 8, 1)
    sigma[:, -1] = 0.5
    rgb = torch.rand(1, 8, 3)
    out_rgb, depth, _, _ = composite(rgb, sigma, t)
    assert torch.allclose(depth, t[:, -1:], atol=1e-5)
    assert torch.allclose(out_rgb, rgb[:, -1], atol=1e-5)


def test_weights_sum_at_most_one():
    t, _ = torch.sort(torch.rand(4, 32) * 0.5 + 0.75, dim=-1)
    sigma = torch.rand(4, 32, 1) * 5
    *_, w = composite(torch.rand(4, 32, 3), sigma, t)
    assert (w >= 0).all() and (w.sum(-1) <= 1 + 1e-5).all()


def test_sample_pdf_follows_weights():
    bins = torch.linspace(0, 1, 11).expand(1, 11)
    weights = torch.zeros(1, 10)
    weights[0, 3] = 1.0
    s = sample_pdf(bins, weights, 1000, eps=0.0)  # no eps: nothing may land outside bin 3
    assert ((s >= 0.3 - 1e-6) & (s <= 0.4 + 1e-6)).all()


def test_importance_samples_add_eps_twice_as_the_original():
    # Coarse s = 0, .2, .4, .6, .8, 1 -> midpoints 0.1 ... 0.9 (4 bins of width 0.2), pdf from
    # weights[1:-1] = [w1, w2, w3, w4]. Sparse weights: only w1 = 1e-5, the rest 0.
    s_coarse = torch.linspace(0, 1, 6)[None]
    weights = torch.tensor([[0.7, 1e-5, 0.0, 0.0, 0.0, 0.3]])  # ends are ignored
    u = torch.tensor([[0.2, 0.5, 0.9]])
    # Each weight gets 1e-5 twice: [3, 2, 2, 2] * 1e-5 -> pdf [3, 2, 2, 2] / 9,
    # cdf [0, 3/9, 5/9, 7/9, 1]; s = mid_lo + (u - cdf_lo) / pdf_bin * 0.2.
    expected = torch.tensor(
        [
            [
                0.1 + 0.2 / (3 / 9) * 0.2,
                0.3 + (0.5 - 3 / 9) / (2 / 9) * 0.2,
                0.7 + (0.9 - 7 / 9) / (2 / 9) * 0.2,
            ]
        ]
    )
    torch.testing.assert_close(importance_samples(s_coarse, weights, 3, u=u), expected)
    # Adding it once (pdf [2, 1, 1, 1] / 5) would put u = 0.5 at 0.3 + 0.1 / 0.2 * 0.2 = 0.4.
    assert abs(importance_samples(s_coarse, weights, 3, u=u)[0, 1].item() - 0.4) > 0.03


def slab_field(depth_plane: float, color=(0.2, -0.4, 0.6)):
    """A thick opaque slab z <= depth_plane-ish: camera at z=1 looks down -z."""
    col = torch.tensor(color)

    def field(points):
        dist = 1.0 - points[..., 2:3]  # distance from the camera plane z=1 along -z
        raw = torch.where(
            dist >= depth_plane, torch.full_like(dist, 200.0), torch.full_like(dist, -200.0)
        )
        return col.expand(*points.shape[:-1], 3), raw

    return field


def test_opaque_slab_renders_its_depth_and_fine_samples_concentrate():
    r = VolumeRenderer(near=0.75, far=1.25, num_coarse=32, num_fine=32, chunk_rays=7)
    origins = torch.tensor([0.0, 0.0, 1.0]).expand(1, 20, 3)
    dirs = torch.tensor([0.0, 0.0, -1.0]).expand(1, 20, 3)
    rgb, depth, opacity = r(slab_field(1.0), origins, dirs)
    # The surface is located up to the coarse+fine sample spacing; fine samples make it sharp.
    assert torch.allclose(depth, torch.full_like(depth, 1.0), atol=0.01)
    assert torch.allclose(rgb, torch.tensor([0.2, -0.4, 0.6]).expand_as(rgb), atol=1e-4)
    assert torch.allclose(opacity, torch.ones_like(opacity), atol=1e-4)
    coarse_only = VolumeRenderer(num_coarse=32, num_fine=0)
    _, depth_c, _ = coarse_only(slab_field(1.0), origins, dirs)
    assert (depth - 1).abs().mean() < (depth_c - 1).abs().mean()


def test_depth_within_near_far_for_random_field():
    r = VolumeRenderer(num_coarse=8, num_fine=8)
    field = lambda p: (torch.randn(*p.shape[:-1], 3), torch.randn(*p.shape[:-1], 1))  # noqa: E731
    origins = torch.zeros(2, 50, 3)
    dirs = torch.nn.functional.normalize(torch.randn(2, 50, 3), dim=-1)
    _, depth, opacity = r(field, origins, dirs, density_noise_std=1.0)
    assert (depth >= 0.75 - 1e-4).all() and (depth <= 1.25 + 1e-4).all()
    assert torch.allclose(opacity, torch.ones_like(opacity), atol=1e-4)


def test_unseeded_render_jitters_from_the_global_rng_as_in_training():
    """Training renders (seed=None) draw coarse then fine jitter from the global RNG, exactly
    those two draws; the seeded (inference) path leaves the global RNG alone."""
    b, n, nc, nf = 2, 5, 6, 4
    seen = []

    def field(points):
        seen.append(points.clone())
        return torch.zeros(*points.shape[:-1], 3), torch.ones(*points.shape[:-1], 1)

    r = VolumeRenderer(near=0.75, far=1.25, num_coarse=nc, num_fine=nf, chunk_rays=0)
    origins = torch.tensor([0.0, 0.0, 1.0]).expand(b, n, 3)
    dirs = torch.tensor([0.0, 0.0, -1.0]).expand(b, n, 3)
    torch.manual_seed(3)
    r(field, origins, dirs)
    after = torch.rand(1)
    torch.manual_seed(3)
    u_coarse = torch.rand(b, n, nc)
    torch.rand(b, n, nf)
    assert torch.equal(torch.rand(1), after)  # no other draws
    t_coarse = 0.75 + stratified_samples((b, n), nc, u=u_coarse) * 0.5
    torch.testing.assert_close(1.0 - seen[0][..., 2].reshape(b, n, nc), t_coarse)
    state = torch.get_rng_state()
    r(field, origins, dirs, seed=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_generator_replays_a_render_and_leaves_the_global_rng_alone():
    def field(points):
        return torch.sin(points * 7), torch.cos(points[..., :1] * 11) * 3

    r = VolumeRenderer(num_coarse=8, num_fine=8, chunk_rays=0)
    origins = torch.tensor([0.0, 0.0, 1.0]).expand(2, 5, 3)
    dirs = torch.nn.functional.normalize(torch.randn(2, 5, 3) - torch.tensor([0, 0, 3.0]), dim=-1)
    state = torch.get_rng_state()
    a = r(field, origins, dirs, generator=torch.Generator().manual_seed(5))
    b = r(field, origins, dirs, generator=torch.Generator().manual_seed(5))
    c = r(field, origins, dirs, generator=torch.Generator().manual_seed(6))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], c[1])


def test_transmittance_is_the_light_left_before_each_sample():
    t = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    sigma = torch.tensor([[[0.0], [float(torch.log(torch.tensor(2.0)))], [1e6], [1.0]]])
    alpha, trans = transmittance(sigma, t)
    # alpha = [0, 1/2, 1, 1]; T = [1, 1, 1/2, ~0] (+1e-10 per step as the original)
    torch.testing.assert_close(trans, torch.tensor([[1.0, 1.0, 0.5, 0.0]]), atol=1e-6, rtol=0)
    *_, w = composite(torch.zeros(1, 4, 3), sigma, t)
    torch.testing.assert_close(w, alpha * trans)


def test_triplane_features_per_plane_and_their_mean():
    from gp3d.models.triplane import sample_triplane_features, sample_triplanes

    planes = torch.zeros(1, 3, 2, 4, 4)
    planes[:, 1] = 3.0  # only the second plane carries features
    points = torch.rand(1, 5, 3) - 0.5  # inside the cube
    per_plane = sample_triplane_features(planes, points)
    assert per_plane.shape == (1, 3, 5, 2)
    torch.testing.assert_close(per_plane[:, 1], torch.full((1, 5, 2), 3.0))
    assert (per_plane[:, [0, 2]] == 0).all()
    planes = torch.randn(2, 3, 4, 6, 6)
    points = torch.rand(2, 7, 3) - 0.5
    torch.testing.assert_close(
        sample_triplanes(planes, points), sample_triplane_features(planes, points).mean(dim=1)
    )


def test_sample_pdf_normalises_unnormalised_weights():
    # weights 2 : 6 : 0 : 2 (sum 1000, not 1) over 4 equal bins -> 20 %, 60 %, 0 %, 20 % of samples
    bins = torch.linspace(0, 1, 5).expand(2, 5)
    weights = torch.tensor([[200.0, 600.0, 0.0, 200.0], [2.0, 6.0, 0.0, 2.0]])
    u = ((torch.arange(1000) + 0.5) / 1000).expand(2, 1000)  # evenly spread uniforms
    for eps, tol in ((0.0, 0.0), (1e-5, 0.002)):
        s = sample_pdf(bins, weights, 1000, u=u, eps=eps)
        frac = torch.stack(
            [((s >= lo) & (s < lo + 0.25)).float().mean(-1) for lo in (0, 0.25, 0.5, 0.75)], -1
        )
        torch.testing.assert_close(frac, torch.tensor([[0.2, 0.6, 0.0, 0.2]] * 2), atol=tol, rtol=0)
    # within a bin the inverse cdf is linear: the first fifth of u fills bin 0 evenly
    torch.testing.assert_close(s[0, :200], (u[0, :200] / 0.2) * 0.25, atol=2e-3, rtol=0)
    # random u: the same fractions up to sampling noise
    s = sample_pdf(bins[:1], weights[:1] * 37.0, 4000)
    assert abs(((s >= 0.25) & (s < 0.5)).float().mean().item() - 0.6) < 0.04


def test_importance_samples_follow_unnormalised_coarse_weights():
    # coarse s = 0, .25, .5, .75, 1 -> midpoints .125 .375 .625 .875; weights[1:-1] = 3 : 1 : 0
    s_coarse = torch.linspace(0, 1, 5)[None]
    weights = torch.tensor([[9.0, 30.0, 10.0, 0.0, 9.0]])
    u = ((torch.arange(400) + 0.5) / 400)[None]
    s = importance_samples(s_coarse, weights, 400, u=u)
    first = ((s >= 0.125) & (s < 0.375)).float().mean().item()
    second = ((s >= 0.375) & (s < 0.625)).float().mean().item()
    assert abs(first - 0.75) < 0.01 and abs(second - 0.25) < 0.01
    assert ((s >= 0.125) & (s <= 0.875)).all()
