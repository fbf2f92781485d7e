import pytest
import torch

from gp3d.models.depth_adaptor import DepthAdaptor

NEAR, FAR = 0.75, 1.25


def _depth(b: int = 4, res: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return NEAR + (FAR - NEAR) * torch.rand(b, 1, res, res, generator=g)


def test_shapes_and_candidates():
    torch.manual_seed(0)
    adaptor = DepthAdaptor(NEAR, FAR, hid_dim=8)
    d = _depth()
    outs = adaptor.candidates(d)
    assert len(outs) == 4 and all(o.shape == d.shape for o in outs)
    assert adaptor(d).shape == d.shape
    assert adaptor.eval()(d).shape == d.shape
    assert sum(p.numel() for p in adaptor.head.parameters()) == 8 + 1  # one shared 1x1 head


def test_near_plane_offset_and_normalisation():
    adaptor = DepthAdaptor(NEAR, FAR)
    near = adaptor.near_plane().item()
    assert near - NEAR == pytest.approx(0.005929, abs=1e-6)
    assert near == pytest.approx(0.755928, abs=1e-6)
    x0 = adaptor.normalize(torch.tensor([near, (near + FAR) / 2, FAR]))
    torch.testing.assert_close(x0, torch.tensor([-1.0, 0.0, 1.0]))


def test_selection_schedule():
    adaptor = DepthAdaptor(NEAR, FAR, hid_dim=4)
    torch.testing.assert_close(adaptor.selection_probs(), torch.full((4,), 0.25))
    adaptor.set_kimg(5_000)
    probs = adaptor.selection_probs()
    torch.testing.assert_close(probs[0], torch.tensor(0.175))
    assert probs.sum().item() == pytest.approx(1.0)
    for kimg in (10_000, 50_000):
        adaptor.set_kimg(torch.tensor(kimg))
        torch.testing.assert_close(adaptor.selection_probs(), torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert "kimg" in adaptor.state_dict()  # EMA copies / checkpoints carry the progress


@pytest.mark.parametrize("kimg", [0, 10_000])
def test_empirical_choice_frequency(kimg):
    adaptor = DepthAdaptor(NEAR, FAR, hid_dim=4)
    adaptor.set_kimg(kimg)
    n = 40_000
    idx = adaptor.sample_choice(n, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(idx, minlength=4).double()
    expected = adaptor.selection_probs().double() * n
    chi2 = ((counts - expected).square() / expected).sum().item()
    assert chi2 < 16.3  # chi-square, 3 dof, p ~ 0.001


def test_forward_uses_the_chosen_candidate_and_keeps_graph():
    torch.manual_seed(0)
    adaptor = DepthAdaptor(NEAR, FAR, hid_dim=4).train()
    d = _depth(b=64, res=4)
    torch.manual_seed(7)
    idx = adaptor.sample_choice(64)
    torch.manual_seed(7)
    out = adaptor(d)
    stacked = torch.stack(adaptor.candidates(d), dim=1)
    torch.testing.assert_close(out, stacked[torch.arange(64), idx])
    out.sum().backward()
    assert all(p.grad is not None for p in adaptor.parameters())


def test_eval_picks_last_output():
    torch.manual_seed(0)
    adaptor = DepthAdaptor(NEAR, FAR, hid_dim=4).eval()
    d = _depth()
    torch.testing.assert_close(adaptor(d), adaptor.candidates(d)[-1])


def test_paper_probability_knob():
    torch.manual_seed(0)
    d = _depth(b=32)
    never = DepthAdaptor(NEAR, FAR, hid_dim=4, p=0.0)
    torch.testing.assert_close(never(d), never.normalize(d))
    torch.testing.assert_close(never.eval()(d), never.normalize(d))
    always = DepthAdaptor(NEAR, FAR, hid_dim=4, p=1.0)
    torch.testing.assert_close(always(d), always.candidates(d)[-1])
    half = DepthAdaptor(NEAR, FAR, hid_dim=4, p=0.5)
    torch.testing.assert_close(half.selection_probs(), torch.tensor([0.5, 0.0, 0.0, 0.5]))
    idx = half.sample_choice(10_000, generator=torch.Generator().manual_seed(2))
    assert set(idx.unique().tolist()) == {0, 3}
    assert (idx == 3).float().mean().item() == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError):
        DepthAdaptor(NEAR, FAR, p=1.5)
