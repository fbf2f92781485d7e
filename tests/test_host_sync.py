"""gp3d's own code reads no tensor back to the host inside a training step after the first.

On a GPU every ``.item()`` / ``float(t)`` / ``bool(t)`` / ``.tolist()`` / ``.cpu()`` of a device
tensor blocks until the queued kernels finish. On CPU we count the calls made directly from
gp3d's source files instead: the step's own decisions (R1 interval, EMA beta, stop) use host-side
counters, and logged scalars stay tensors. (Reads inside torch and Lightning are not counted:
e.g. Adam's ``step`` counter is a CPU tensor even for CUDA parameters, so reading it never syncs.)
"""

import sys
from pathlib import Path

import pytest
import torch

from gp3d.train import train
from gp3d.training.lit_module import GP3DLitModule as LitModule
from tests.helpers import TINY, compose_train

GP3D = str(Path(__file__).resolve().parents[1] / "gp3d")
READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


@pytest.fixture
def count_reads(monkeypatch):
    """Wrap the tensor read methods; counting is on only while ``state["on"]``."""
    state = {"on": False, "calls": []}
    for name in READS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *a, _orig=original, _name=name, **k):
            caller = sys._getframe(1).f_code.co_filename
            if state["on"] and f"{GP3D}" in caller:
                state["calls"].append(f"{_name} at {caller}:{sys._getframe(1).f_lineno}")
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return state


def test_training_steps_after_the_first_read_nothing_back(tmp_path, monkeypatch, count_reads):
    per_step: list[list[str]] = []
    real_step = LitModule.training_step

    def counted(self, batch, batch_idx):
        count_reads["calls"], count_reads["on"] = [], True
        try:
            return real_step(self, batch, batch_idx)
        finally:
            count_reads["on"] = False
            per_step.append(count_reads["calls"])

    monkeypatch.setattr(LitModule, "training_step", counted)
    cfg = compose_train(
        ["experiment=smoke", *TINY, "model.total_kimg=0.016", "model.module.r1_interval=2"],
        tmp_path,
        tmp_path / "data",
    )
    train(cfg)
    assert len(per_step) == 4  # 16 images at batch 4; steps 0 and 2 include the R1 phase
    assert per_step[1:] == [[], [], []], per_step
