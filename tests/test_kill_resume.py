"""SIGKILL a real training process, resume it with ``resume=latest``, and compare every logged
loss step by step with a run that was never interrupted (CPU, one thread, the smoke experiment).

Covers: model and EMA weights, both optimisers, nimg / iteration counters (R1 cadence, every
kimg schedule, camera-generator warm-up), torch / numpy / Python RNG states and the data
stream position across an epoch boundary (4 steps an epoch), all through a checkpoint taken by
``KimgCheckpoint`` and chosen by ``gp3d.utils.resume``.
"""

import csv
import signal
from pathlib import Path

import pytest

from tests.train_process import output, prepared_data, snapshots, start, wait_for_nimg

RUN = ["model.total_kimg=0.04", "data.epoch_images=16"]  # 10 steps of 4 images, 4 an epoch
LOSSES = ("train/loss_G", "train/loss_D", "train/logits_real", "train/logits_fake", "train/r1")


def logged_losses(run_dir: Path) -> dict[int, dict[str, str]]:
    """{nimg: {loss: value as logged}}; later rows win (a resumed run appends to the CSV)."""
    out: dict[int, dict[str, str]] = {}
    with open(run_dir / "logs" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("progress/kimg"):
                nimg = round(float(row["progress/kimg"]) * 1000)
                out[nimg] = {k: row[k] for k in LOSSES if row.get(k)}
    return out


@pytest.mark.slow
def test_sigkill_then_resume_logs_the_same_losses_as_an_uninterrupted_run(tmp_path_factory):
    data = prepared_data(tmp_path_factory.mktemp("data"))
    root = tmp_path_factory.mktemp("kill")
    straight = start(root / "straight", data, *RUN)
    killed = start(root / "killed", data, *RUN)
    wait_for_nimg(killed, root / "killed", 20)  # mid-epoch 2: resumes across an epoch boundary
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    resume_at = snapshots(root / "killed")[-1]
    assert resume_at < 40, "killed too late to test anything"
    resumed = start(root / "killed", data, *RUN, "resume=latest")
    assert resumed.wait(timeout=600) == 0, output(root / "killed")
    assert straight.wait(timeout=600) == 0, output(root / "straight")
    assert "resume=latest: resuming from" in output(root / "killed")

    expected, got = logged_losses(root / "straight"), logged_losses(root / "killed")
    after = [n for n in sorted(expected) if n > resume_at]
    assert after and after[-1] == 40
    r1_steps = [n for n in after if (n // 4 - 1) % 2 == 0]  # smoke: r1_interval=2, from step 0
    for nimg in after:
        # Lightning's CSV row repeats the last train/r1 on steps without R1: compare computed ones.
        keys = [k for k in LOSSES if k != "train/r1" or nimg in r1_steps]
        want = {k: expected[nimg][k] for k in keys}
        assert {k: got[nimg].get(k) for k in keys} == want, f"at {nimg} (resumed at {resume_at})"
    assert r1_steps  # the lazy-R1 cadence is covered too
