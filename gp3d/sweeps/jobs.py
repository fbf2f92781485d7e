"""What gp3d's Hydra launchers (hydra_plugins/gp3d_launchers: ``checked`` (default), ``local``,
``slurm``) do besides launching: check every job of a batch before any starts, so an unknown
override or a bad value in one combination stops the sweep with one message before anything is
queued; and give a re-queued SLURM job ``resume=latest``.
"""

import logging
from collections.abc import Sequence
from typing import Any

from hydra.core.utils import filter_overrides
from hydra.errors import HydraException

from gp3d.config_checks import ConfigError, config_problems

log = logging.getLogger("gp3d.sweeps")


def with_resume_latest(overrides: Sequence[str]) -> list[str]:
    """The job's overrides plus ``resume=latest`` (unless it names its own resume): what a
    re-queued job needs to continue from its run folder's newest valid checkpoint."""
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    if keys & {"resume", "ckpt_path"}:
        return list(overrides)
    return [*overrides, "resume=latest"]


def check_jobs(launcher: Any, job_overrides: Sequence[Sequence[str]]) -> None:
    """Compose every job's config and check it; raise one ConfigError listing every bad job."""
    loader = launcher.hydra_context.config_loader
    problems: list[str] = []
    for num, overrides in enumerate(job_overrides):
        label = f"job {num} ({' '.join(filter_overrides(overrides)) or 'no overrides'})"
        try:
            cfg = loader.load_sweep_config(launcher.config, list(overrides))
        except HydraException as err:  # unknown key, missing group option, bad syntax
            problems.append(f"{label}: {' '.join(str(err).split())}")
            continue
        problems += [f"{label}: {p}" for p in config_problems(cfg)]
    if problems:
        raise ConfigError(
            "the sweep was not started; fix these jobs first:\n  - " + "\n  - ".join(problems)
        )
    log.info("checked the configs of %d jobs", len(job_overrides))
