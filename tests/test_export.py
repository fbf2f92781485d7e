"""The portable generator file: export, reload without Hydra, identical renders."""

import pytest
import torch

from gp3d.export import CheckpointError, build, export_generator, load_generator


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
