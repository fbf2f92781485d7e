"""SIGTERM / SIGINT to a real training process: the step finishes, last.ckpt is saved, exit 0."""

import signal

import pytest

from tests.train_process import ckpt_nimg, output, prepared_data, start, wait_for_nimg


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepared_data(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_the_current_step_and_exits_zero(sig, tmp_path, data_dir):
    run = tmp_path / "run"
    proc = start(run, data_dir, "model.total_kimg=10")  # far more than the test waits for
    at_signal = wait_for_nimg(proc, run, 8)
    proc.send_signal(sig)
    rc = proc.wait(timeout=120)
    assert rc == 0, output(run)
    assert f"{sig.name} received" in output(run)
    last = run / "checkpoints" / "last.ckpt"
    # At most the step under way when the signal came is finished after it (4 images a step).
    assert at_signal <= ckpt_nimg(last) <= at_signal + 4, output(run)
    assert not list(run.rglob(".*.tmp-*")), "no temporary files may be left behind"
