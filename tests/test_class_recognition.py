"""The AC-GAN class head and loss, and the class-recognition score of the 3D benchmark."""

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException

from data_prep.synthetic import dataset as synthetic
from gp3d.eval3d import class_accuracy as ca
from gp3d.models.discriminator import Discriminator
from gp3d.training.losses import class_loss
from gp3d.types import Batch
from tests.test_multiview import tiny_module

SCHED = {"patch_beta": 0.8, "nerf_noise": 0.0, "blur_sigma": 0.0, "kd_weight": 0.0}


def test_class_loss_values_and_gradient_sign():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 2])
    expected = (-F.log_softmax(logits, 1)[0, 0] + math.log(3)) / 2
    loss = class_loss(logits, labels)
    assert loss.item() == pytest.approx(expected.item())
    (g,) = torch.autograd.grad(loss, logits)
    assert g[0, 0] < 0 and g[1, 2] < 0  # descending raises the labelled class's logit
    assert g[0, 1] > 0 and g[1, 0] > 0


def test_discriminator_class_head_shapes_and_errors():
    kw = dict(img_resolution=32, patch_resolution=16, channel_base=128, channel_max=16)
    d = Discriminator(**kw, c_dim=4, hyper_w_dim=8, class_head=True)
    out = d(torch.randn(3, 3, 16, 16), None, torch.eye(4)[[0, 1, 3]])
    assert out.logits.shape == (3,) and out.kd is None and out.class_logits.shape == (3, 4)
    assert (
        Discriminator(**kw, c_dim=4, hyper_w_dim=8)(
            torch.randn(2, 3, 16, 16), None, torch.eye(4)[:2]
        ).class_logits
        is None
    )
    with pytest.raises(ValueError, match="class-conditional"):
        Discriminator(**kw, c_dim=0, class_head=True)


def test_class_weight_without_a_head_is_refused(tmp_path):
    with pytest.raises(InstantiationException, match="class_head"):
        tiny_module(tmp_path, "model.module.class_weight=1.0")


def _batch(n=4, res=32):
    return Batch(
        image=torch.rand(n, 3, res, res) * 2 - 1,
        depth=torch.rand(n, 1, res, res) * 2 - 1,
        label=torch.arange(n) % 3,
    )


def test_class_loss_reaches_g_and_only_real_images_train_the_head(tmp_path):
    """G step: the class term's gradient reaches the synthesis network; D step: the head's
    loss is the cross-entropy on the *real* batch with its labels."""
    torch.manual_seed(0)
    lit = tiny_module(
        tmp_path, "model.module.num_views=1", "model.discriminator.class_head=true",
        "model.module.class_weight=1.0",
    )  # fmt: skip
    batch = _batch()
    x, patch, c, _ = lit._fake(batch, SCHED, update_emas=False)
    out = lit._run_d(x, patch, c, SCHED)
    cls = class_loss(out.class_logits, c.argmax(1))
    grads = torch.autograd.grad(cls, list(lit.G.synthesis.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)

    seen = []
    real_forward = type(lit.D).forward

    def spy(self, x, patch=None, c=None):
        o = real_forward(self, x, patch, c)
        seen.append((x.detach(), c, o))
        return o

    logs: dict = {}
    with pytest.MonkeyPatch.context() as m:
        m.setattr(type(lit.D), "forward", spy)
        m.setattr(lit, "optimizers", lambda: [None, None])  # stepping is patched out
        m.setattr(lit, "toggle_optimizer", lambda o: None)
        m.setattr(lit, "untoggle_optimizer", lambda o: None)
        m.setattr(lit, "manual_backward", lambda loss: None)
        m.setattr(lit, "_step", lambda opt, mod: None)
        lit._d_step(batch, SCHED, logs)
    _, c_real, o_real = seen[-1]  # fakes first, then reals
    assert torch.equal(c_real.argmax(1), batch.label)
    expected = class_loss(o_real.class_logits, batch.label)
    assert logs["train/class_D"].item() == pytest.approx(expected.item())


def test_classifier_learns_separable_classes_and_scores_per_class():
    """Three classes told apart by colour: the trained classifier is right on new images, and
    ``accuracy`` reports per-class fractions (a wrong class scores 0)."""
    g = torch.Generator().manual_seed(0)

    def images(n):
        labels = torch.arange(n) % 3
        base = F.one_hot(labels, 3).float()[:, :, None, None] * 1.6 - 0.8
        return (base + 0.1 * torch.randn(n, 3, 16, 16, generator=g)).clamp(-1, 1), labels

    x, y = images(60)
    net = ca.train_classifier(x, y, 3, epochs=4, batch_size=20, lr=5e-3)
    xt, yt = images(30)
    assert ca.accuracy(net, xt, yt)["accuracy"] == 1.0
    shifted = ca.accuracy(net, xt, (yt + 1) % 3)
    assert shifted["accuracy"] == 0.0 and shifted["per_class"] == [0.0, 0.0, 0.0]
    assert math.isnan(ca.accuracy(net, xt[:1], yt[:1])["per_class"][2])  # class not present


def test_cached_classifier_round_trip(tmp_path, monkeypatch):
    split = tmp_path / "train"
    synthetic.generate_dataset(split, num_samples=12, resolution=16)
    calls = []
    train = ca.train_classifier
    monkeypatch.setattr(
        ca, "train_classifier", lambda *a, **k: calls.append(1) or train(*a, **{**k, "epochs": 1})
    )
    net1, cached1 = ca.cached_classifier(split, 10)
    net2, cached2 = ca.cached_classifier(split, 10)
    assert (cached1, cached2) == (False, True) and len(calls) == 1
    assert list((tmp_path / "classifiers").iterdir())[0].name.startswith("train-")
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    assert torch.equal(net1(ca.to_classifier_input(x)), net2(ca.to_classifier_input(x)))
    with pytest.raises(ValueError, match="labels up to"):
        ca.cached_classifier(split, 2, seed=1)  # the split's labels do not fit 2 classes


def test_render_per_class_labels_in_class_order(tmp_path):
    lit = tiny_module(tmp_path)
    images, labels = ca.render_per_class(lit.G_ema, per_class=2, batch_size=4)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert images.shape == (6, 3, ca.RESOLUTION, ca.RESOLUTION) and torch.isfinite(images).all()
