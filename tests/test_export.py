"""The portable generator file: export, reload without Hydra, identical renders."""

import pytest
import torch

from gp3d.export import main
from gp3d.inference.portable import CheckpointError, build, export_generator, load_generator


def _render(loaded, seed=0):
    G = loaded.G
    torch.manual_seed(seed)  # the renderer's stratified jitter draws from the global RNG
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(2, G.z_dim, generator=gen)
    c = torch.eye(G.c_dim)[[0, 1 % G.c_dim]] if G.c_dim else None
    cam = G.camera_prior.sample(2, generator=gen)
    return G(z, c, camera=cam, resolution=16, noise_mode="const")


def test_checkpoint_and_export_render_identically(tiny_run, tmp_path):
    from_ckpt = load_generator(tiny_run["ckpt"])
    assert from_ckpt.meta["kimg"] == pytest.approx(0.008)
    assert from_ckpt.meta["data"]["resolution"] == 32
    assert from_ckpt.class_names  # recorded from the dataset manifest
    path = export_generator(tiny_run["ckpt"], tmp_path / "g.pt")
    assert path.stat().st_size < tiny_run["ckpt"].stat().st_size  # no D, no optimiser states
    reloaded = load_generator(path)
    a, b = _render(from_ckpt), _render(reloaded)
    torch.testing.assert_close(a.rgb, b.rgb, rtol=0, atol=0)
    torch.testing.assert_close(a.depth, b.depth, rtol=0, atol=0)
    assert not any(p.requires_grad for p in reloaded.G.parameters())


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_generator(tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_generator(junk)
    torch.save({"state_dict": {}}, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="gp3d_model_config"):
        load_generator(tmp_path / "old.ckpt")


def test_build_handles_partial_and_nesting():
    opt = build({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    p = torch.nn.Parameter(torch.zeros(1))
    assert opt(params=[p]).defaults["lr"] == 0.1
    nested = build(
        {"a": {"_target_": "torch.nn.Identity"}, "b": [1, {"_target_": "builtins.dict"}]}
    )
    assert isinstance(nested["a"], torch.nn.Identity) and nested["b"] == [1, {}]


# --- the rendering object -------------------------------------------------------------------


def test_export_reload_render_identical_through_the_api(tiny_run, tmp_path):
    import gp3d

    path = tmp_path / "g.pt"
    main([str(tiny_run["ckpt"]), str(path)])  # the CLI the error messages point to
    a, b = gp3d.load_generator(tiny_run["ckpt"]), gp3d.load_generator(path)
    z = a.latents([3, 4])
    kw = dict(c=[0, 1], resolution=20, truncation_psi=0.7, steps_multiplier=2, far_offset=1.0)
    ra, rb = a.render(z, **kw), b.render(z, **kw)  # no global seeding: renders are seeded
    assert ra.rgb.shape == (2, 3, 20, 20) and ra.depth.shape == (2, 1, 20, 20)
    torch.testing.assert_close(ra.rgb, rb.rgb, rtol=0, atol=0)
    torch.testing.assert_close(ra.depth, rb.depth, rtol=0, atol=0)
    assert ra.depth.min() >= 0.75 and ra.depth.max() <= 2.25  # far + far_offset
    cam = a.mean_camera([0, 1], num_samples=32)
    fixed_a = a.render(z, c=[0, 1], camera=cam, resolution=12)
    fixed_b = b.render(z, c=[0, 1], camera=cam, resolution=12)
    torch.testing.assert_close(fixed_a.rgb, fixed_b.rgb, rtol=0, atol=0)
    mesh_a = a.mesh(z[:1], c=[0], resolution=16, threshold=_mid_density(a, z[:1], [0]))
    mesh_b = b.mesh(z[:1], c=[0], resolution=16, threshold=_mid_density(a, z[:1], [0]))
    assert len(mesh_a.faces) > 0 and (mesh_a.vertices == mesh_b.vertices).all()


def _mid_density(g, z, c):
    from gp3d.inference.mesh import cube_bounds, density_grid

    planes = g.planes(z, c, 0.7)
    grid = density_grid(lambda p: g.G.density(planes, p[None])[0, :, 0], 16, *cube_bounds(0.3))
    return float((grid.min() + grid.max()) / 2)


@pytest.mark.parametrize("chunk", [1, 37, 128])
def test_chunked_rendering_equals_one_shot(chunk, tmp_path):
    from tests.tiny_generator import tiny_generator

    g = tiny_generator(tmp_path)
    z = g.latents([0, 1])
    cam = g.cameras(z, [1, 2], seed=5)
    one = g.render(z, [1, 2], camera=cam, resolution=16, chunk_rays=0, steps_multiplier=2)
    many = g.render(z, [1, 2], camera=cam, resolution=16, chunk_rays=chunk, steps_multiplier=2)
    torch.testing.assert_close(many.rgb, one.rgb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(many.depth, one.depth, rtol=1e-5, atol=1e-6)
    other = g.render(z, [1, 2], camera=cam, resolution=16, chunk_rays=0, seed=1)
    assert not torch.equal(other.depth, one.depth)  # the seed does drive the ray jitter


def test_truncation_goes_to_the_class_mean(tmp_path):
    from tests.tiny_generator import tiny_generator

    g = tiny_generator(tmp_path)
    z = g.latents([0, 1, 2])
    p0 = g.planes(z, [2, 2, 1], truncation_psi=0.0)  # psi = 0: every z of a class is its mean w
    torch.testing.assert_close(p0[0], p0[1])
    assert not torch.allclose(p0[0], p0[2])
    full = g.planes(z, [2, 2, 1], truncation_psi=1.0)
    assert not torch.allclose(full[0], full[1])


def test_bad_classes_are_explained(tmp_path):
    from tests.tiny_generator import tiny_generator

    g = tiny_generator(tmp_path)
    z = g.latents([0])
    with pytest.raises(ValueError, match="class-conditional"):
        g.render(z, None, resolution=8)
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 3\)"):
        g.render(z, [7], resolution=8)
    with pytest.raises(ValueError, match="unknown class 'zebra'"):
        g.class_index("zebra")
    u = tiny_generator(tmp_path / "u", c_dim=0)
    with pytest.raises(ValueError, match="unconditional"):
        u.render(u.latents([0]), [1], resolution=8)
    assert u.render(u.latents([0]), resolution=8).rgb.shape == (1, 3, 8, 8)


def test_seeded_ray_jitter_is_uniform_and_keyed_by_seed_stream_and_ray():
    from gp3d.models.ray_samplers import ray_uniforms

    ids = torch.arange(20000).reshape(2, -1)
    u = ray_uniforms(0, 0, ids, 8)
    assert u.shape == (2, 10000, 8) and u.min() > 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.std().item() - 12**-0.5) < 0.01
    assert torch.equal(ray_uniforms(0, 0, ids[:, 500:900], 8), u[:, 500:900])  # chunk-free
    for other in (ray_uniforms(1, 0, ids, 8), ray_uniforms(0, 1, ids, 8)):
        assert (other == u).float().mean() < 1e-3
