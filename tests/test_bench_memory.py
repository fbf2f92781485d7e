"""gp3d.bench.memory: model-state bytes per device under DDP and FSDP, and the largest FSDP unit
as gp3d.training.fsdp cuts the networks."""

from torch import nn

from gp3d.bench.memory import largest_unit, model_state_bytes


def test_ddp_holds_everything_fsdp_splits_all_but_the_ema():
    ddp = model_state_bytes(trained=1000, ema=100, devices=8, sharded=False)
    fsdp = model_state_bytes(trained=1000, ema=100, devices=8, sharded=True)
    assert ddp == {"weights": 4000, "gradients": 4000, "adam": 8000, "ema": 400, "total": 16400}
    assert fsdp == {"weights": 500, "gradients": 500, "adam": 1000, "ema": 400, "total": 2400}


def test_largest_unit_counts_a_block_or_a_network_rest():
    G = nn.Module()
    G.mapping = nn.Linear(10, 10)  # 110: a whole part is one unit
    G.synthesis = nn.Module()
    G.synthesis.blocks = nn.ModuleDict({"a": nn.Linear(20, 10), "b": nn.Linear(3, 3)})  # 210, 12
    G.synthesis.out = nn.Linear(5, 5)  # the synthesis rest: 30
    D = nn.Module()
    D.blocks = nn.ModuleDict({"a": nn.Linear(4, 4)})  # 20
    D.head = nn.Linear(12, 10)  # D's rest: 130
    assert largest_unit(G, D) == 210
    G.synthesis.out = nn.Linear(30, 10)  # the rest, 310, is now the largest
    assert largest_unit(G, D) == 310
