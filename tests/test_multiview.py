"""Multi-view discrimination (multiview_pti.md 1.4): cameras, the D batch layout, the losses, a run."""

import math
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import open_dict

from gp3d.models.discriminator import Discriminator
from gp3d.models.layers import minibatch_std
from gp3d.train import train
from gp3d.training import views
from gp3d.training.losses import generator_loss
from gp3d.types import Batch, CameraParams
from tests.helpers import TINY, compose_train

B, V = 4, 3  # TINY's batch and the multiview experiment's views


def tiny_module(tmp_path: Path, *overrides: str):
    """A LightningModule at TINY sizes with 3 classes, no data needed."""
    cfg = compose_train(
        ["experiment=multiview", *TINY, "model.c_dim=3", "model.kd_dim=0", *overrides],
        tmp_path,
        tmp_path / "data",
    )
    return instantiate(cfg.model.module, _convert_="all")


def tiny_batch(n: int = B, res: int = 32) -> Batch:
    return Batch(
        image=torch.rand(n, 3, res, res) * 2 - 1,
        depth=torch.rand(n, 1, res, res) * 2 - 1,
        label=torch.arange(n) % 3,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")  # the synthetic dataset, generated on first use


SCHED = {"patch_beta": 0.8, "nerf_noise": 0.5, "blur_sigma": 0.0, "kd_weight": 0.0}


# --- camera distributions --------------------------------------------------------------------
@pytest.fixture(scope="module")
def cams_setup(tmp_path_factory):
    lit = tiny_module(tmp_path_factory.mktemp("cams"))
    G = lit.G
    z = torch.randn(5, G.z_dim)
    c = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 1]), 3).float()
    return G, z, c


def test_prior_views_are_prior_samples(cams_setup):
    G, z, c = cams_setup
    torch.manual_seed(1)
    got = views.draw_view_cameras(G.camera_prior, G.camera_generator, z, c, V, "prior")
    torch.manual_seed(1)
    want = G.camera_prior.sample(5 * V)
    assert torch.equal(got.to_tensor(), want.to_tensor())


def test_posterior_views_map_independent_prior_draws_with_each_latent(cams_setup):
    G, z, c = cams_setup
    torch.manual_seed(2)
    got = views.draw_view_cameras(G.camera_prior, G.camera_generator, z, c, V, "posterior")
    torch.manual_seed(2)
    prior = G.camera_prior.sample(5 * V)
    want = G.camera_generator(prior, z.repeat_interleave(V, 0), c.repeat_interleave(V, 0))
    assert torch.equal(got.to_tensor(), want.to_tensor())
    assert got.batch_size == 5 * V
    # V = 1 is the single-view draw: Generator.cameras with the same RNG
    torch.manual_seed(3)
    one = views.draw_view_cameras(G.camera_prior, G.camera_generator, z, c, 1, "posterior")
    torch.manual_seed(3)
    assert torch.equal(one.to_tensor(), G.cameras(z, c).to_tensor())


def test_around_views_stay_in_the_range_around_each_latents_posterior_mean(cams_setup):
    G, z, c = cams_setup
    yaw_r, pitch_r, n = 0.3, 0.1, 8
    torch.manual_seed(4)
    center = views.posterior_mean(G.camera_prior, G.camera_generator, z, c, n).to_tensor()
    torch.manual_seed(4)
    cams = views.draw_view_cameras(
        G.camera_prior, G.camera_generator, z, c, V, "around", yaw_r, pitch_r, n
    ).to_tensor()
    per_view = cams.reshape(5, V, 8)
    offset = per_view - center[:, None]
    assert offset[..., 0].abs().max() <= yaw_r + 1e-6
    assert offset[..., 1].abs().max() <= pitch_r + 1e-6
    assert offset[..., 0].abs().max() > yaw_r / 3  # the views do spread
    assert torch.equal(per_view[..., 2:], center[:, None, 2:].expand(-1, V, -1))  # fov, look-at
    # the centre is each latent's own: the camera generator sees z
    assert not torch.allclose(center[0, :2], center[1, :2])


def test_around_keeps_pitch_off_the_poles():
    center = CameraParams.from_tensor(torch.tensor([[0.0, 0.01, 0, 1, 20, 0, 0, 0]]))
    cams = views.around_cameras(center, 64, yaw_range=0.1, pitch_range=0.5)
    assert cams.pitch.min() > 0 and cams.pitch.max() < math.pi


def test_bad_view_config_is_one_clear_error(tmp_path):
    with pytest.raises(InstantiationException, match="view_distribution must be one of"):
        tiny_module(tmp_path, "model.module.view_distribution=sphere")
    with pytest.raises(InstantiationException, match="num_views must be >= 1"):
        tiny_module(tmp_path, "model.module.num_views=0")


# --- layout ----------------------------------------------------------------------------------
def test_multi_view_render_is_latent_major(cams_setup):
    """Row b * V + v of a views=V render is latent b seen by camera b * V + v: the same image as
    rendering copies of each latent's planes, without the copies."""
    G, z, c = cams_setup
    planes = G.synthesis(G.map(z, c), noise_mode="const")
    cams = views.draw_view_cameras(G.camera_prior, None, z, c, V, "prior")
    torch.manual_seed(5)
    got = G.render(planes, cams, 8, views=V)
    torch.manual_seed(5)
    want = G.render(planes.repeat_interleave(V, 0), cams, 8)
    assert got.rgb.shape == (5 * V, 3, 8, 8)
    assert torch.allclose(got.rgb, want.rgb, atol=1e-6)
    assert torch.allclose(got.depth, want.depth, atol=1e-6)
    with pytest.raises(ValueError, match="3 views need 15 cameras"):
        G.render(planes, cams[: 5 * V - 1], 8, views=V)


def test_each_view_of_a_latent_gets_its_own_patch():
    torch.manual_seed(0)
    from gp3d.training.patches import sample_patch_params

    p = views.view_patches(sample_patch_params(B * V, 0.25, beta=1.0), V)
    scales = p.scale.reshape(B, V)
    assert all(len(set(row.tolist())) == V for row in scales)  # views of one latent differ
    # the original's groups of 4 samples sharing a draw are now 4 latents of one view
    assert torch.equal(scales[:, 0], scales[0, 0].expand(B))


def mbstd_groups(n: int, group_size: int) -> list[set[int]]:
    """Which rows share a minibatch-std group, found by perturbing one row at a time."""
    x = torch.randn(n, 1, 1, 1)
    base = minibatch_std(x, group_size)[:, 1]
    groups = []
    for i in range(n):
        y = x.clone()
        y[i] += 1.0
        changed = (minibatch_std(y, group_size)[:, 1] != base).flatten()
        groups.append(set(changed.nonzero().flatten().tolist()))
    return groups


@pytest.mark.parametrize("latents", [4, 8])
def test_minibatch_std_groups_never_hold_two_views_of_a_latent(latents):
    for members in mbstd_groups(latents * V, group_size=4):
        assert len({m // V for m in members}) == len(members)


def test_view_angle_spread_is_the_mean_pairwise_angle():
    t = torch.zeros(2, 8)
    t[:, 1] = math.pi / 2
    t[1, 0] = math.pi / 2  # yaw 0 and yaw 90 degrees on the equator
    assert views.view_angle_spread(CameraParams.from_tensor(t), 2).item() == pytest.approx(
        math.pi / 2, abs=1e-4
    )
    assert views.view_angle_spread(CameraParams.from_tensor(t), 1).item() == 0


# --- the training step -----------------------------------------------------------------------
def test_single_view_fake_batch_is_the_single_view_forward(tmp_path):
    """V = 1 draws and renders exactly as the single-view step did: G.forward on z, shuffled
    labels and patches in that order (the whole fast_dev_run was checked equal to the commit
    before multi-view, see the README)."""
    lit = tiny_module(tmp_path, "model.module.num_views=1")
    batch = tiny_batch()
    torch.manual_seed(6)
    x, patch, c, _ = lit._fake(batch, SCHED, update_emas=False)
    torch.manual_seed(6)
    z = torch.randn(B, lit.G.z_dim)
    c_ref = lit.onehot(batch.label[torch.randperm(B)])
    patch_ref = lit._patches(B, SCHED["patch_beta"])
    out = lit.G(z, c_ref, patch=patch_ref, resolution=16, density_noise_std=0.5)
    assert torch.equal(x, torch.cat([out.rgb, out.depth_adapted], 1))
    assert torch.equal(patch.to_tensor(), patch_ref.to_tensor()) and torch.equal(c, c_ref)


def test_fake_batch_synthesises_each_latent_once(tmp_path, monkeypatch):
    lit = tiny_module(tmp_path)
    seen = []
    synth = lit.G.synthesis.forward
    monkeypatch.setattr(
        lit.G.synthesis, "forward", lambda ws, **k: seen.append(ws) or synth(ws, **k)
    )
    x, patch, c, cams = lit._fake(tiny_batch(), SCHED, update_emas=False)
    assert [ws.shape[0] for ws in seen] == [B]
    assert x.shape == (B * V, 4, 16, 16) and patch.batch_size == cams.batch_size == B * V
    assert torch.equal(c, c[::V].repeat_interleave(V, 0))  # one class per latent, every view


@pytest.fixture(scope="module")
def multiview_run(tmp_path_factory, data_dir):
    """One fast_dev_run iteration of experiment=multiview (RGB-D D, depth adaptor, camera
    generator, patches, R1) with D's inputs recorded."""
    tmp = tmp_path_factory.mktemp("mv_run")
    cfg = compose_train(
        ["experiment=multiview", *TINY, "+trainer.fast_dev_run=true"], tmp, data_dir
    )
    calls = []
    forward = Discriminator.forward

    def spy(self, x, patch=None, c=None):
        out = forward(self, x, patch, c)
        calls.append({"x": x.detach(), "patch": patch, "c": c, "logits": out[0].detach()})
        return out

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Discriminator, "forward", spy)
        out = train(cfg)
    return out, calls


def test_d_sees_every_view_of_every_latent(multiview_run):
    out, calls = multiview_run
    # G step: fakes; D step: fakes then reals; R1 (iteration 0): reals
    assert [call["x"].shape[0] for call in calls] == [B * V, B * V, B, B]
    for call in calls[:2]:
        assert call["x"].shape[1] == 4  # RGB + adapted depth
        assert torch.equal(call["c"], call["c"][::V].repeat_interleave(V, 0))
        assert call["patch"].shape == (B * V, 3)
    assert out["model"].nimg.item() == B  # progress counts latents / real images, not renders


def test_g_loss_is_the_mean_of_the_per_view_losses(multiview_run):
    out, calls = multiview_run
    per_view = calls[0]["logits"].reshape(B, V)
    mean_of_views = torch.stack([generator_loss(per_view[:, v]) for v in range(V)]).mean()
    assert out["metrics"]["train/loss_G"] == pytest.approx(mean_of_views.item(), rel=1e-5)


def test_per_view_logits_and_spreads_are_logged(multiview_run):
    out, calls = multiview_run
    metrics = out["metrics"]
    d_fake = calls[1]["logits"].reshape(B, V)
    for v in range(V):
        assert metrics[f"train/logits_fake_view{v}"] == pytest.approx(d_fake[:, v].mean().item())
    assert metrics["train/logits_fake_view_std"] == pytest.approx(
        d_fake.std(dim=1, unbiased=False).mean().item(), rel=1e-5
    )
    assert metrics["train/view_angle_spread"] > 0
    for p in out["model"].G.parameters():
        assert torch.isfinite(p).all()


def test_around_views_train_with_distillation(tmp_path, data_dir):
    """3DGP's full recipe (KD head, depth adaptor, learned cameras) with "around" views."""
    cfg = compose_train(
        [
            "experiment=3dgp_multiview",
            *TINY,
            "+trainer.fast_dev_run=true",
            "model.module.view_distribution=around",
            "model.module.view_mean_samples=4",
        ],
        tmp_path,
        data_dir,
    )
    with open_dict(cfg):
        cfg.model.module.view_range = [0.6, 0.3]
    out = train(cfg)
    assert out["model"].hparams.num_views == V and "train/kd" in out["metrics"]
    assert out["metrics"]["train/view_angle_spread"] > 0.05
    assert all(torch.isfinite(p).all() for p in out["model"].G.parameters())
