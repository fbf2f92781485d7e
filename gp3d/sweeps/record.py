"""What each training run leaves for the sweep report: ``run.json`` (status, wall time, objective,
error) and, when it failed, ``failure.txt`` with the traceback.

In a multirun a failed job is recorded and swallowed, so the launcher goes on with the others
(Hydra's basic sweeper re-raises the first failure only after every job ran; submitit's and
Optuna's answers to an exception differ) and the report shows why it failed.
"""

import json
import logging
import math
import os
import time
import traceback
from pathlib import Path
from types import TracebackType

from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger("gp3d.sweeps")

RUN_JSON = "run.json"
FAILURE_TXT = "failure.txt"


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True))
    os.replace(tmp, path)


def read_run_json(run_dir: str | os.PathLike) -> dict | None:
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


class RunRecord:
    """Context manager around one training run.

    Args:
        run_dir: the run's output folder.
        keep_going: swallow an ``Exception`` after recording it (multirun jobs); a single run
            re-raises. ``SystemExit`` / ``KeyboardInterrupt`` always propagate (a SLURM requeue
            exits through ``SystemExit``): they are recorded as ``stopped``.
    """

    def __init__(self, run_dir: str | os.PathLike, keep_going: bool) -> None:
        self.run_dir = Path(run_dir)
        self.keep_going = keep_going
        self.objective = math.nan
        self.kimg: float | None = None  # training progress reached (set by the caller)
        self.started = 0.0

    def _write(self, status: str, error: str | None = None) -> None:
        # one writer per run: under DDP every rank runs main() on the same folder. Lightning's
        # rank (from RANK / SLURM_PROCID / LOCAL_RANK until the strategy sets the global rank)
        if rank_zero_only.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            self.run_dir / RUN_JSON,
            {
                "status": status,
                "started": self.started,
                "wall_s": round(time.time() - self.started, 3),
                "objective": self.objective,
                "kimg": self.kimg,
                "error": error,
            },
        )

    def __enter__(self) -> "RunRecord":
        self.started = time.time()
        (self.run_dir / FAILURE_TXT).unlink(missing_ok=True)  # a re-queued job starts clean
        self._write("running")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            self._write("finished")
            return False
        if not isinstance(exc, Exception):
            self._write("stopped", f"{type(exc).__name__}: {exc}")
            return False
        self.objective = math.nan
        message = f"{type(exc).__name__}: {exc}"
        rank = rank_zero_only.rank
        # every failing rank keeps its traceback (another rank's may be the first cause)
        name = FAILURE_TXT if rank == 0 else f"failure.rank{rank}.txt"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / name).write_text("".join(traceback.format_exception(exc_type, exc, tb)))
        self._write("failed", message)
        if self.keep_going:
            log.error("run %s failed (%s); the sweep goes on", self.run_dir, message)
            return True
        return False
