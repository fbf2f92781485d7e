"""Shared fixtures. Tests run offline, on CPU, at tiny sizes."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests: few examples, no per-example deadline (a busy 2-core CPU), derandomized so CI
# is reproducible, no example database written into the work tree. HYPOTHESIS_PROFILE=explore
# searches harder with fresh random examples.
settings.register_profile("gp3d", max_examples=25, deadline=None, derandomize=True, database=None)
settings.register_profile("explore", max_examples=500, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gp3d"))

torch.set_num_threads(min(2, os.cpu_count() or 1))

SLOW_TEST_TIMEOUT_S = 1800  # `slow` tests (make test-full) may train for minutes on one core


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_S))


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
