"""gp3d's Hydra launchers. Hydra only loads launcher plugins from the ``hydra_plugins`` namespace
package, hence this folder; the logic lives in gp3d.sweeps.jobs. Configs: conf/hydra/launcher/.

- ``CheckedBasicLauncher`` (``checked``, the default): Hydra's sequential launcher.
- ``LocalLauncher`` (``local``): submitit's local executor, one process per job, all at once.
- ``SlurmLauncher`` (``slurm``): submitit on SLURM, one array task per job; a pre-empted or
  timed-out job is re-queued with ``resume=latest`` (submitit calls ``checkpoint`` from its
  pre-emption signal handler (SIGUSR2), after gp3d's GracefulStop has written last.ckpt).

Each checks the config of every job of a batch before any job starts.
"""

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    LocalLauncher as SubmititLocalLauncher,
)
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)

from gp3d.sweeps.jobs import check_jobs, with_resume_latest


class CheckedBasicLauncher(BasicLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        check_jobs(self, job_overrides)
        return super().launch(job_overrides, initial_job_idx)


class LocalLauncher(SubmititLocalLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        check_jobs(self, job_overrides)
        return super().launch(job_overrides, initial_job_idx)


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        check_jobs(self, job_overrides)
        return super().launch(job_overrides, initial_job_idx)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        sweep_overrides, *rest = args
        return super().checkpoint(with_resume_latest(sweep_overrides), *rest, **kwargs)
