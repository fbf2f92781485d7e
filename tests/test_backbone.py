"""The strengthened backbone: extra synthesis blocks, a bigger decoder, parameter counts per part."""

import logging

import pytest
import torch
from hydra.utils import instantiate

from gp3d.models.param_count import format_parameter_table, parameter_counts
from gp3d.models.synthesis import TriPlaneSynthesis
from gp3d.models.triplane import TriPlaneDecoder
from gp3d.train import train
from tests.helpers import TINY, compose_train


def tiny(**kwargs) -> TriPlaneSynthesis:
    return TriPlaneSynthesis(
        w_dim=16, plane_resolution=16, plane_channels=4, channel_base=256, channel_max=32, **kwargs
    )


@pytest.mark.parametrize("extra", [1, 2])
def test_extra_blocks_keep_shapes_and_consume_every_w(extra):
    net = tiny(extra_blocks=extra)
    # 4x4 block: 1 conv; 8 and 16: 2 convs each, plus 2 per extra block; the last ToRGB
    assert net.num_ws == TriPlaneSynthesis.count_ws(16, extra) == 1 + 2 * 2 * (1 + extra) + 1
    names = [f"b{r}_x{i}" for r in (8, 16) for i in range(extra)]
    assert set(net.blocks) == {"b4", "b8", "b16", *names}
    assert net.blocks[f"b8_x{extra - 1}"].conv0.up == 1  # same resolution, no upsampling
    ws = torch.randn(2, net.num_ws, 16, requires_grad=True)
    planes = net(ws, noise_mode="const")
    assert planes.shape == tiny()(torch.randn(2, 6, 16)).shape == (2, 3, 4, 16, 16)
    planes.square().sum().backward()
    assert (ws.grad.abs().sum(dim=(0, 2)) > 0).all()  # each of the num_ws styles is used
    with pytest.raises(ValueError, match="expected ws"):
        net(torch.randn(2, net.num_ws - 1, 16))


def test_no_extra_blocks_is_todays_network():
    torch.manual_seed(0)
    today = tiny().state_dict()
    torch.manual_seed(0)
    strong = tiny(extra_blocks=1).state_dict()
    assert set(today) == {k for k in strong if "_x" not in k}
    net = tiny(extra_blocks=0)
    net.load_state_dict(today)  # strict: the names and shapes checkpoints hold
    with pytest.raises(ValueError, match="extra_blocks"):
        tiny(extra_blocks=-1)


def fc_params(dims: list[int]) -> int:
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


@pytest.mark.parametrize("hidden, layers", [(16, 2), (64, 2), (64, 4), (128, 1)])
def test_decoder_size_is_as_computed(hidden, layers):
    dec = TriPlaneDecoder(in_features=8, hidden_dim=hidden, num_layers=layers)
    want = fc_params([8] + [hidden] * (layers - 1) + [4])
    assert sum(p.numel() for p in dec.parameters()) == want
    rgb, sigma = dec(torch.randn(2, 5, 8))
    assert rgb.shape == (2, 5, 3) and sigma.shape == (2, 5, 1)


def generator_and_d(tmp_path, *overrides):
    cfg = compose_train(
        ["experiment=smoke", *TINY, "model.c_dim=3", *overrides], tmp_path, tmp_path / "d"
    )
    return instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)


def test_parameter_table_covers_every_part_and_grows_only_the_backbone(tmp_path):
    G, D = generator_and_d(tmp_path)
    counts = parameter_counts(G, D)
    parts = ["mapping", "synthesis", "decoder", "camera generator", "depth adaptor"]
    assert sum(counts[p] for p in parts) == counts["G total"]  # no part missed
    assert counts["D"] == sum(p.numel() for p in D.parameters()) > 0
    strong_G, strong_D = generator_and_d(tmp_path, "backbone=strong", "model.decoder.hidden_dim=32")
    strong = parameter_counts(strong_G, strong_D)
    assert strong["synthesis"] > counts["synthesis"]
    assert strong["decoder"] - counts["decoder"] == fc_params([8, 32, 32, 32, 4]) - fc_params(
        [8, 16, 4]
    )
    assert all(strong[p] == counts[p] for p in ("mapping", "camera generator", "D"))
    # the strong synthesis takes its extra styles from the same broadcast w
    planes = strong_G.synthesis(strong_G.map(torch.randn(2, 16), torch.eye(3)[:2]))
    assert planes.shape == (2, 3, 8, 16, 16)
    table = format_parameter_table(strong)
    assert all(p in table for p in [*parts, "D"]) and f"{strong['decoder']:,}" in table


def test_train_prints_the_parameter_table(tmp_path, caplog):
    cfg = compose_train(
        ["experiment=strong_backbone", *TINY, "+trainer.fast_dev_run=true"],
        tmp_path,
        tmp_path / "data",
    )
    with caplog.at_level(logging.INFO, logger="gp3d.train"):
        lit = train(cfg)["model"]
    assert lit.G.synthesis.extra_blocks == 1 and len(lit.G.decoder.net) == 4
    text = caplog.text
    counts = parameter_counts(lit.G, lit.D)
    assert "synthesis" in text and f"{counts['synthesis']:,}" in text
    assert f"{counts['camera generator']:,}" in text
