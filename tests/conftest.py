"""Shared fixtures. Tests run offline, on CPU, at tiny sizes."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Single-threaded torch for a module: tiny convs run fastest on one thread and stay fast on a
    busy shared CPU; a fixed thread count also keeps features bit-identical between runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished tiny training run (8 images of the smoke experiment, class-conditional, KD on):
    ``{"dir": run folder, "ckpt": last.ckpt, "data": dataset folder}``. Shared by the tests of
    export / generate / evaluate so the stack trains once per session."""
    from gp3d.train import train
    from tests.helpers import TINY, compose_train

    root = tmp_path_factory.mktemp("tiny_run")
    cfg = compose_train(
        ["experiment=smoke", *TINY, "model.total_kimg=0.008", "logger=csv"],
        root / "run",
        root / "data",
    )
    out = train(cfg)
    ckpt = root / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return {"dir": root / "run", "ckpt": ckpt, "data": out["trainer"].datamodule.path}
