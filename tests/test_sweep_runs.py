"""Real multiruns of the smoke experiment as subprocesses (`python -m gp3d.train -m ...`): the
submitit local launcher, a failing job that does not stop the sweep, an Optuna study, and bad
sweeps refused before any job starts."""

import os
import re
import subprocess
import sys

import pytest
import yaml

from gp3d.sweep_report import main as report_main
from gp3d.sweeps.record import read_run_json
from gp3d.sweeps.report import run_folders
from tests.train_process import ROOT, prepared_data

SMOKE = ["experiment=smoke", "trainer=cpu", "logger=csv", "callbacks.samples.every_kimg=0",
         "~callbacks.video", "~callbacks.progress", "+trainer.enable_progress_bar=false",
         "optimized_metric=val/fid8"]  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepared_data(tmp_path_factory.mktemp("data"))  # jobs in parallel must not race


def sweep(sweep_dir, data_dir, *overrides, timeout=900):  # generous: a busy shared CPU
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    flags = [o for o in overrides if o == "-m"]  # argparse wants the flag before the overrides
    cmd = [sys.executable, "-m", "gp3d.train", *flags, *SMOKE, f"paths.data_dir={data_dir}",
           f"hydra.sweep.dir={sweep_dir}", *(o for o in overrides if o != "-m")]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def finished_with_metrics(run_dir) -> float:
    record = read_run_json(run_dir)
    assert record and record["status"] == "finished", (run_dir, record)
    assert "val/fid8" in (run_dir / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    return record["objective"]


@pytest.mark.slow
def test_local_submitit_sweep_runs_both_jobs(tmp_path, data_dir):
    out = sweep(tmp_path / "s", data_dir, "-m", "hydra/launcher=local", "seed=0,1")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = run_folders(tmp_path / "s")
    assert [r.name for r in runs] == ["0", "1"]
    objectives = [finished_with_metrics(r) for r in runs]
    assert all(v > 0 for v in objectives)
    assert (tmp_path / "s" / ".submitit").is_dir()  # each job was a submitit process
    assert yaml.safe_load((runs[1] / ".hydra" / "overrides.yaml").read_text())[-1] == "seed=1"


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep_and_the_report_shows_it(tmp_path, data_dir, capsys):
    # job 0 asks to resume from a checkpoint that does not exist: it fails after start-up
    out = sweep(tmp_path / "s", data_dir, "-m", f"resume={tmp_path}/missing.ckpt,null")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    first, second = run_folders(tmp_path / "s")
    assert read_run_json(first)["status"] == "failed"
    assert "ResumeError" in (first / "failure.txt").read_text()
    finished_with_metrics(second)
    assert report_main([str(tmp_path / "s")]) == 0
    table = capsys.readouterr().out
    assert "failed" in table and "ResumeError" in table and "2 runs, 1 ok, 1 not ok" in table


@pytest.mark.slow
def test_optuna_study_of_two_trials_reports_the_best_run(tmp_path, data_dir):
    out = sweep(tmp_path / "s", data_dir, "hparams_search=gamma_lr", "hydra.sweeper.n_trials=2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = run_folders(tmp_path / "s")
    objectives = [finished_with_metrics(r) for r in runs]
    assert len(objectives) == 2
    result = yaml.safe_load((tmp_path / "s" / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(min(objectives))
    assert set(result["best_params"]) == {
        "model.module.r1_gamma", "model.module.g_optimizer.lr", "model.module.d_optimizer.lr",
    }  # fmt: skip


@pytest.mark.slow  # ~13 s each on a busy 2-core machine: mostly the process start
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["-m", "model.no_such_key=1,2"], "model.no_such_key"),
        # job 1 only: the patch is larger than the 32 px images
        (["-m", "model.patch_resolution=16,64"], r"job 1 \(.*model.patch_resolution=64"),
        # Optuna composes its trials itself: gp3d's launcher checks them before launching
        (
            ["hparams_search=gamma_lr", "model.no_such_key=choice(1,2)"],
            r"sweep was not started(.|\n)*job 0 .*Could not override 'model.no_such_key'",
        ),
    ],
    ids=["unknown-override", "bad-value-in-one-job", "optuna-unknown-param"],
)
def test_bad_sweep_is_refused_before_any_job_starts(tmp_path, overrides, message):
    out = sweep(tmp_path / "s", tmp_path / "data", *overrides)
    assert out.returncode != 0
    assert "unrecognized arguments" not in out.stderr
    assert re.search(message, out.stdout + out.stderr), out.stderr[-3000:]
    assert run_folders(tmp_path / "s") == [], "no job may have started"
