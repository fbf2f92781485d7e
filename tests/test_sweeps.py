"""Sweep plumbing without training: metrics.csv reading, the objective, run records, W&B sweep
identity, the SIGUSR1 hand-over to a launcher, and the sweep report on run folders written here."""

import csv
import json
import math
import os
import signal

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger
from omegaconf import open_dict

from gp3d.callbacks.preemption import GracefulStop, pass_on_signals
from gp3d.sweep_report import main as report_main
from gp3d.sweeps.identity import apply_wandb_identity, identity_from_hydra, run_identity
from gp3d.sweeps.jobs import with_resume_latest
from gp3d.sweeps.metrics_csv import best_value, read_metrics_csv
from gp3d.sweeps.objective import run_objective
from gp3d.sweeps.record import RunRecord, read_run_json
from gp3d.sweeps.report import run_folders, summarize_run, table_rows
from tests.helpers import CONF_DIR

HEADER = ["epoch", "progress/kimg", "step", "train/loss_D", "train/loss_G", "val/fid8", "val/nfs4"]


def write_metrics(path, rows):
    """rows: dicts of HEADER keys (missing = empty cell), as Lightning's CSVLogger writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADER)
        w.writeheader()
        w.writerows(rows)


def healthy_rows(fids, loss=1.0):
    rows = []
    for i, fid in enumerate(fids):
        step = 10 * (i + 1)
        rows.append(
            {
                "step": step,
                "progress/kimg": 0.04 * (i + 1),
                "train/loss_D": loss,
                "train/loss_G": loss,
            }
        )
        rows.append({"step": step, "val/fid8": fid, "val/nfs4": 5.0 + i})
    return rows


def write_run(root, name, overrides, rows=None, record=None, failure=None, last_ckpt=True,
              total_kimg=0.12, optimized_metric="val/fid8"):  # fmt: skip
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    cfg = {"model": {"total_kimg": total_kimg}, "optimized_metric": optimized_metric,
           "optimized_direction": "minimize"}  # fmt: skip
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if rows is not None:
        write_metrics(run / "logs" / "metrics.csv", rows)
    if record is not None:
        (run / "run.json").write_text(json.dumps(record))
    if failure is not None:
        (run / "failure.txt").write_text(failure)
    if last_ckpt:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    return run


def test_metrics_csv_keeps_each_metric_with_its_step_and_kimg(tmp_path):
    path = tmp_path / "logs" / "metrics.csv"
    write_metrics(path, healthy_rows([3.0, 2.0, 2.5]))
    h = read_metrics_csv(path)
    assert h.values("val/fid8") == [3.0, 2.0, 2.5]
    # the val rows carry no kimg of their own: the progress logged at that step is used
    assert [k for _, k, _ in h.series["val/fid8"]] == pytest.approx([0.04, 0.08, 0.12])
    assert h.last_kimg() == pytest.approx(0.12)
    assert best_value(h.values("val/fid8"), "minimize") == 2.0
    assert best_value(h.values("val/nfs4"), "maximize") == 7.0
    assert math.isnan(best_value([math.nan, math.inf], "minimize"))
    with pytest.raises(ValueError, match="minimize or maximize"):
        best_value([1.0], "min")


def _csv_logger_with(tmp_path, rows):
    lg = CSVLogger(save_dir=str(tmp_path), name="logs", version="")
    write_metrics(tmp_path / "logs" / "metrics.csv", rows)
    return lg


def test_objective_is_the_best_value_nan_when_diverged_and_errors_on_a_typo(tmp_path):
    lg = _csv_logger_with(tmp_path, healthy_rows([3.0, 2.0, 2.5]))
    assert run_objective("val/fid8", "minimize", [lg], {"val/fid8": 2.5}) == 2.0
    assert run_objective("val/nfs4", "maximize", [lg], {}) == 7.0
    assert math.isnan(run_objective(None, "minimize", [lg], {}))
    # no CSV logger: the last value Lightning holds
    assert run_objective("val/fid8", "minimize", [], {"val/fid8": 4.0}) == 4.0
    with pytest.raises(ValueError, match=r"val/fid2k was never logged.*val/fid8"):
        run_objective("val/fid2k", "minimize", [lg], {})
    bad = _csv_logger_with(tmp_path / "b", healthy_rows([3.0, 2.0, math.nan]))
    assert math.isnan(run_objective("val/fid8", "minimize", [bad], {}))


def test_run_record_swallows_failures_only_in_multiruns(tmp_path):
    with RunRecord(tmp_path / "a", keep_going=True) as rec:
        rec.objective = 1.0
        raise RuntimeError("boom")
    record = read_run_json(tmp_path / "a")
    assert record["status"] == "failed" and record["error"] == "RuntimeError: boom"
    assert math.isnan(record["objective"])
    assert "RuntimeError: boom" in (tmp_path / "a" / "failure.txt").read_text()

    with pytest.raises(RuntimeError), RunRecord(tmp_path / "b", keep_going=False):
        raise RuntimeError("single run")
    assert read_run_json(tmp_path / "b")["status"] == "failed"

    # a SLURM requeue leaves through SystemExit: never swallowed, recorded as stopped
    with pytest.raises(SystemExit), RunRecord(tmp_path / "c", keep_going=True):
        raise SystemExit(-1)
    assert read_run_json(tmp_path / "c")["status"] == "stopped"

    with RunRecord(tmp_path / "d", keep_going=True) as rec:
        rec.objective, rec.kimg = 0.5, 1.0
    assert read_run_json(tmp_path / "d") | {"started": 0, "wall_s": 0} == {
        "status": "finished", "started": 0, "wall_s": 0, "objective": 0.5, "kimg": 1.0, "error": None,
    }  # fmt: skip


def test_sweep_identity_names_runs_by_the_swept_overrides():
    sweep = ["experiment=smoke", "model.module.r1_gamma=0.1,1.0", "seed=0,1", "logger=csv"]
    job = ["experiment=smoke", "model.module.r1_gamma=1.0", "seed=0", "logger=csv", "resume=latest"]
    ident = run_identity("smoke", job, "/x/outputs/smoke/multirun_2026-01-02_03-04-05", sweep)
    assert ident.group == "smoke/multirun_2026-01-02_03-04-05"
    assert ident.job_type == "sweep-smoke"
    assert ident.name == "model.module.r1_gamma=1.0,seed=0"
    assert ident.tags == ["model.module.r1_gamma=1.0", "seed=0"]
    # Optuna: the searched parameters are not in the CLI, they come from hydra.sweeper.params
    opt = run_identity(
        "smoke", ["experiment=smoke", "model.module.r1_gamma=0.3"], "/s/m", ["experiment=smoke"],
        {"model.module.r1_gamma": "interval(0.01, 10)"},
    )  # fmt: skip
    assert opt.name == "model.module.r1_gamma=0.3"
    single = run_identity("train", ["seed=3"], None, None)
    assert single.group is None and single.name == "seed=3" and single.tags == ["seed=3"]


def test_wandb_logger_of_a_multirun_job_gets_group_name_tags(tmp_path, monkeypatch):
    """Composed like a job of `-m logger=wandb model.module.r1_gamma=0.1,1.0`; WANDB_MODE=offline,
    the logger is built but no W&B process is started (its init arguments are checked)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep_dir = tmp_path / "multirun_2026-01-02_03-04-05"
    sweep_dir.mkdir()
    sweep_cli = ["experiment=smoke", "logger=wandb", "model.module.r1_gamma=0.1,1.0"]
    (sweep_dir / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"overrides": {"task": sweep_cli}}})
    )
    job = ["experiment=smoke", "logger=wandb", "model.module.r1_gamma=1.0"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=job, return_hydra_config=True)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(sweep_dir)
        cfg.hydra.runtime.output_dir = str(sweep_dir / "1")
        cfg.hydra.job.num = 1
    HydraConfig.instance().set_config(cfg)
    try:
        apply_wandb_identity(cfg.logger, identity_from_hydra(cfg.task_name))
        logger = instantiate(cfg.logger.wandb)
    finally:
        HydraConfig.instance().cfg = None
    init = logger._wandb_init
    assert init["group"] == "smoke/multirun_2026-01-02_03-04-05"
    assert init["job_type"] == "sweep-smoke"
    assert init["name"] == "model.module.r1_gamma=1.0"
    assert init["tags"] == ["model.module.r1_gamma=1.0"]
    assert init["dir"] == str(sweep_dir / "1")  # offline files in the run folder: wandb sync
    assert not list(tmp_path.rglob("offline-run-*")), "building the logger must not start W&B"
    with open_dict(cfg):
        cfg.logger.wandb.group, cfg.logger.wandb.name = "mine", None
    apply_wandb_identity(cfg.logger, run_identity("smoke", job, str(sweep_dir), sweep_cli))
    assert cfg.logger.wandb.group == "mine", "an explicit setting wins"


@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGUSR1], ids=["SIGUSR2", "SIGUSR1"])
def test_requeue_signal_is_handed_to_the_launchers_handler_after_fit(sig):
    """Under submitit a Python handler owns its pre-emption signal (SIGUSR2 by default):
    GracefulStop takes it for the stop, and pass_on raises it again once fit is over so the
    launcher re-queues the job."""
    seen = []
    previous = signal.signal(sig, lambda signum, frame: seen.append(signum))
    try:
        stop = GracefulStop()
        stop.on_train_start(None, None)
        os.kill(os.getpid(), sig)
        assert stop.received == sig.name and seen == []  # the stop, not the requeue, first
        stop.on_train_end(None, None)
        pass_on_signals([stop])
        assert seen == [sig]
        pass_on_signals([stop])
        assert seen == [sig], "handed on once"
    finally:
        signal.signal(sig, previous)


def test_requeue_signal_is_left_alone_without_a_launcher_handler():
    from lightning.pytorch.trainer.connectors.signal_connector import _HandlersCompose

    for handler in (signal.SIG_DFL, _HandlersCompose([lambda s, f: None])):
        previous = signal.signal(signal.SIGUSR1, handler)
        try:
            stop = GracefulStop()
            stop.on_train_start(None, None)
            assert signal.getsignal(signal.SIGUSR1) is handler  # Lightning's own SLURM requeue
            stop.on_train_end(None, None)
        finally:
            signal.signal(signal.SIGUSR1, previous)


def test_requeued_job_resumes_latest_unless_it_names_a_checkpoint():
    assert with_resume_latest(["seed=1"]) == ["seed=1", "resume=latest"]
    assert with_resume_latest(["resume=/a.ckpt"]) == ["resume=/a.ckpt"]


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun"
    common = ["experiment=smoke", "logger=csv"]
    write_run(root, "0", [*common, "model.module.r1_gamma=0.1"], healthy_rows([3.0, 2.0, 2.5]),
              {"status": "finished", "wall_s": 12.5, "objective": 2.0, "kimg": 0.12})  # fmt: skip
    write_run(root, "1", [*common, "model.module.r1_gamma=1.0"], healthy_rows([3.0]),
              {"status": "failed", "wall_s": 3.0, "objective": None,
               "error": "ResumeError: resume=/x.ckpt: the checkpoint is unusable"},
              failure="Traceback ...\nResumeError: resume=/x.ckpt", last_ckpt=False)  # fmt: skip
    diverging = healthy_rows([3.0, 2.0])
    diverging[-2]["train/loss_G"] = math.nan
    write_run(root, "2", [*common, "model.module.r1_gamma=10"], diverging,
              {"status": "finished", "wall_s": 9.0, "objective": None, "kimg": 0.08})  # fmt: skip
    write_run(root, "3", [*common, "model.module.r1_gamma=3"], healthy_rows([3.0, 2.9]),
              {"status": "running", "wall_s": 0.0, "objective": None})  # fmt: skip
    write_run(root, "10", [*common, "model.module.r1_gamma=5"], healthy_rows([4.0]),
              {"status": "finished", "wall_s": 4.0, "objective": 4.0, "kimg": 0.04})  # fmt: skip
    (root / "not_a_run").mkdir()
    return root


def test_report_rows_mark_failed_diverged_stopped_and_unfinished_runs(sweep):
    folders = run_folders(sweep)
    assert [p.name for p in folders] == ["0", "1", "2", "3", "10"]  # job order, not text order
    runs = [summarize_run(p) for p in folders]
    rows = {r["run"]: r for r in table_rows(runs, ["val/fid8", "val/nfs4"])}
    assert rows["0"]["overrides"] == "model.module.r1_gamma=0.1"  # only what differs
    assert rows["0"]["val/fid8 final"] == "2.5" and rows["0"]["val/fid8 best"] == "2"
    assert rows["0"]["val/nfs4 best"] == "7"  # NFS: larger is better
    assert rows["0"]["status"] == "ok" and rows["0"]["kimg"] == "0.12"
    assert rows["0"]["wall_s"] == "12.5"
    assert rows["1"]["status"] == "failed" and "ResumeError" in rows["1"]["reason"]
    assert rows["2"]["status"] == "diverged" and "train/loss_G" in rows["2"]["reason"]
    assert rows["3"]["status"] == "unfinished" and "still running or killed" in rows["3"]["reason"]
    assert rows["10"]["status"] == "stopped" and "0.04 of 0.12 kimg" in rows["10"]["reason"]


def test_report_command_prints_and_writes_csv_and_png(sweep, capsys):
    assert report_main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    assert "val/fid8 best" in printed and "5 runs, 1 ok, 4 not ok" in printed
    with open(sweep / "sweep_report.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "failed", "diverged", "unfinished", "stopped"]
    png = (sweep / "sweep_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not list(sweep.glob("*.tmp*"))


def test_report_command_on_a_folder_without_runs(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err


def test_slurm_launcher_asks_one_task_per_gpu_and_its_signal_before_the_limit(
    tmp_path, monkeypatch
):
    """hydra/launcher=slurm with trainer=ddp (8 GPUs x 2 nodes): the sbatch script submitit would
    submit (built without a cluster: submitit's srun probe is patched)."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        SlurmLauncher as SubmititSlurmLauncher,
    )

    from hydra_plugins.gp3d_launchers.launchers import SlurmLauncher

    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8",
                 "trainer.num_nodes=2", "hydra.launcher.partition=gpu",
                 f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    params = dict(cfg.hydra.launcher)
    assert params.pop("_target_") == "hydra_plugins.gp3d_launchers.launchers.SlurmLauncher"
    launcher = SlurmLauncher(**params)
    launcher.config = cfg
    monkeypatch.setattr(submitit.slurm.slurm.SlurmExecutor, "affinity", classmethod(lambda c: 1))
    scripts = []

    def capture(executor, fn, *args):
        scripts.append(executor._executor._make_submission_file_text("python -m job", "0"))
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    SubmititSlurmLauncher.launch(launcher, [["seed=0"]], initial_job_idx=0)  # no up-front check
    (script,) = scripts
    for line in ("--partition=gpu", "--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8",
                 "--signal=USR2@180", "--time=2880"):  # fmt: skip
        assert f"#SBATCH {line}" in script, script


def test_run_record_is_written_by_rank_zero_only(tmp_path, monkeypatch):
    """Under DDP every rank runs main() on the same run folder: rank 0 owns run.json; a failing
    rank k keeps its own traceback without touching rank 0's files."""
    from lightning.pytorch.utilities import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with RunRecord(tmp_path, keep_going=True) as rec:
        rec.objective = 2.0
    assert read_run_json(tmp_path) is None
    with RunRecord(tmp_path, keep_going=True):
        raise RuntimeError("rank one broke")
    assert read_run_json(tmp_path) is None and not (tmp_path / "failure.txt").exists()
    assert "rank one broke" in (tmp_path / "failure.rank1.txt").read_text()

    monkeypatch.setattr(rank_zero_only, "rank", 0)
    with RunRecord(tmp_path, keep_going=True) as rec:
        rec.objective = 3.0
    assert read_run_json(tmp_path)["objective"] == 3.0
