"""Running shard jobs: in this process, or on a pool of spawned worker processes."""

import multiprocessing
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.shards.output import remove_temp_files
from data_prep.shards.worker import EncodeSettings, ShardJob, shard_name, write_one_shard


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the pool


def _run_one(args: tuple[EncodeSettings, ShardJob]) -> dict[str, Any]:
    return write_one_shard(*args)


def run_jobs(settings: EncodeSettings, jobs: list[ShardJob], workers: int) -> Iterator[dict]:
    """Shard records as shards finish (any order); ``workers`` = 0 runs in this process."""
    if workers == 0:
        for job in jobs:
            yield write_one_shard(settings, job)
        return
    # spawn: the parent may hold torch threads, which fork can deadlock; workers import no torch
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(min(workers, len(jobs)), initializer=_ignore_sigint)
    try:
        yield from pool.imap_unordered(_run_one, [(settings, j) for j in jobs])
        pool.close()
    except BaseException:
        pool.terminate()  # killed workers may leave temp files: removed below / by a re-run
        raise
    finally:
        pool.join()
        remove_temp_files(Path(settings.out), [shard_name(j.index) for j in jobs])
