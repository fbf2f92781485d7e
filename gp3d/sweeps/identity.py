"""How one sweep's W&B runs find each other: a shared group (the sweep folder) and job type, the
run named and tagged by the overrides that the sweep varies (all CLI overrides for a single run).
"""

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

# Overrides that say how to run, not what is being compared.
IGNORED_KEYS = {"resume", "ckpt_path", "hydra/launcher", "hydra/sweeper"}


@dataclass
class RunIdentity:
    group: str | None
    job_type: str
    name: str
    tags: list[str] = field(default_factory=list)


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(sweep_overrides: list[str], search_params: dict | None = None) -> set[str]:
    """Keys the sweep varies: a CLI override with a choice (``a=1,2``), a range or an interval
    (Hydra's sweep syntax), plus every Optuna search parameter (``hydra.sweeper.params``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
    keys = {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}
    return keys | set(search_params or {})


def run_identity(
    task_name: str,
    job_overrides: list[str],
    sweep_dir: str | None,
    sweep_overrides: list[str] | None,
    search_params: dict | None = None,
) -> RunIdentity:
    """``sweep_dir`` None: a single run (no group, named by all its overrides)."""
    useful = [o for o in job_overrides if override_key(o) not in IGNORED_KEYS]
    if sweep_dir is None:
        return RunIdentity(None, task_name, ",".join(useful) or task_name, useful)
    varied = swept_keys(sweep_overrides or [], search_params)
    picked = [o for o in useful if override_key(o) in varied] or useful
    group = f"{task_name}/{Path(sweep_dir).name}"
    return RunIdentity(group, f"sweep-{task_name}", ",".join(picked) or task_name, picked)


def identity_from_hydra(task_name: str) -> RunIdentity:
    """The identity of the running Hydra job (outside a Hydra app: a single run named by task)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return run_identity(task_name, [], None, None)
    hc = HydraConfig.get()
    job_overrides = list(hc.overrides.task)
    if hc.mode != RunMode.MULTIRUN:
        return run_identity(task_name, job_overrides, None, None)
    sweep_dir = str(hc.sweep.dir)
    sweep_overrides = job_overrides
    multirun_yaml = Path(sweep_dir) / "multirun.yaml"  # the sweep's own CLI (a,b choices)
    if multirun_yaml.is_file():
        sweep_overrides = list(OmegaConf.load(multirun_yaml).hydra.overrides.task)
    params = hc.sweeper.get("params") if "params" in hc.sweeper else None
    params = OmegaConf.to_container(params) if params is not None else None
    return run_identity(task_name, job_overrides, sweep_dir, sweep_overrides, params)


def apply_wandb_identity(logger_cfg: DictConfig | None, identity: RunIdentity | None) -> None:
    """Fill group / job_type / name / tags of every WandbLogger node that leaves them null
    (conf/logger/wandb.yaml). An explicit setting wins."""
    if not logger_cfg or identity is None:
        return
    for node in logger_cfg.values():
        if not isinstance(node, DictConfig) or not str(node.get("_target_", "")).endswith(
            "WandbLogger"
        ):
            continue
        with open_dict(node):
            if node.get("group") is None:
                node.group = identity.group
            if node.get("job_type") is None:
                node.job_type = identity.job_type
            if node.get("name") is None:
                node.name = identity.name
            if not node.get("tags"):
                node.tags = list(identity.tags)
