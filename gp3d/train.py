"""Training entry point: ``python -m gp3d.train [experiment=...] [overrides...]``.

Composes conf/train.yaml, creates the dataset if its config says how (``data.prepare``),
checks the config against the dataset manifest, then builds datamodule, model, callbacks,
loggers and trainer from ``_target_`` nodes and fits.
"""

import logging
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from gp3d.callbacks.preemption import pass_on_signals
from gp3d.config_checks import ConfigError, check_config
from gp3d.data.format import manifest_sha256
from gp3d.data.prepare import prepare_dataset
from gp3d.models.param_count import format_parameter_table, parameter_counts
from gp3d.sweeps.identity import apply_wandb_identity, identity_from_hydra
from gp3d.sweeps.objective import run_objective
from gp3d.sweeps.record import RunRecord
from gp3d.utils.env import configure_tf32, configure_wandb_mode
from gp3d.utils.instantiate import instantiate_list
from gp3d.utils.resume import resolve_resume

log = logging.getLogger("gp3d.train")


def resolve_against_data(cfg: DictConfig, datamodule) -> None:
    """Fill ``model.c_dim: auto`` from the manifest and reject contradictions early."""
    num_classes = datamodule.num_classes
    if "depth.png" not in datamodule.manifest["keys"]:
        raise ConfigError(
            f"the shards at {cfg.data.path} have no depth maps ('depth.png'); gp3d's shard format "
            "needs a (monocular) depth estimate per image for the RGB-D discriminator: add them with "
            "the data_prep depth-estimation step (or import precomputed maps) and rewrite the shards"
        )
    with open_dict(cfg):
        c_dim = cfg.model.c_dim
        if c_dim == "auto":
            cfg.model.c_dim = num_classes if num_classes > 1 else 0
        elif int(c_dim) not in (0, num_classes):
            raise ConfigError(
                f"model.c_dim={c_dim} but the dataset at {cfg.data.path} has {num_classes} classes; "
                f"use model.c_dim={num_classes} (conditional), 0 (unconditional) or auto"
            )
        use_emb = bool(cfg.data.get("use_embeddings", False))
        if cfg.model.kd_dim == "auto":  # KD on exactly when the data carries teacher features
            cfg.model.kd_dim = int(datamodule.embedding_dim or 0) if use_emb else 0
    kd_dim = int(cfg.model.kd_dim)
    if kd_dim > 0 and not use_emb:
        raise ConfigError(
            "knowledge distillation is on (model.kd_dim > 0) but data.use_embeddings=false; "
            "set data.use_embeddings=true, or turn KD off with model.kd_dim=0"
        )
    if kd_dim > 0 and datamodule.embedding_dim not in (None, kd_dim):
        raise ConfigError(
            f"model.kd_dim={kd_dim} but the shards at {cfg.data.path} hold {datamodule.embedding_dim}-d "
            f"teacher features; use model.kd_dim={datamodule.embedding_dim} or auto"
        )


def data_info(datamodule) -> dict:
    """What tools need to know about the training data, stored in every checkpoint."""
    m = datamodule.manifest
    return {
        "path": str(Path(datamodule.path).resolve()),
        "resolution": int(m["resolution"]),
        "num_classes": int(m["num_classes"]),
        "class_names": list(m["class_names"]),
        "class_counts": list(m["class_counts"]),
        "manifest_sha256": manifest_sha256(m),
    }


def train(cfg: DictConfig) -> dict:
    check_config(cfg)  # before any data, model or compute: one message naming every bad setting
    configure_wandb_mode()
    configure_tf32(cfg.get("tf32", True))
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(prepare_dataset(cfg.data))
    resolve_against_data(cfg, datamodule)
    model = instantiate(cfg.model.module, _convert_="all")
    model.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    model.data_info = data_info(datamodule)
    callbacks = instantiate_list(cfg.get("callbacks"))
    apply_wandb_identity(cfg.get("logger"), identity_from_hydra(cfg.task_name))  # sweep group/name
    loggers = instantiate_list(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    table = format_parameter_table(parameter_counts(model.G, model.D))
    log.info("parameters:\n%s\noutput dir %s", table, trainer.default_root_dir)
    try:
        resume = resolve_resume(cfg.get("resume") or cfg.get("ckpt_path"), cfg.paths.output_dir)
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
    finally:
        if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
            import wandb

            wandb.finish()
    pass_on_signals(callbacks)  # a submitit job stopped by its signal: re-queued now
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    direction = cfg.get("optimized_direction", "minimize")
    objective = run_objective(cfg.get("optimized_metric"), direction, loggers, metrics)
    return {"metrics": metrics, "model": model, "trainer": trainer, "objective": objective}


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Returns the sweep objective (``optimized_metric``). In a multirun a failed job is recorded
    in its run folder (run.json, failure.txt) and the sweep goes on (gp3d.sweeps.record)."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    log.info("run dir: %s", run_dir)
    with RunRecord(run_dir, keep_going=hc.mode == RunMode.MULTIRUN) as record:
        out = train(cfg)
        record.objective, record.kimg = out["objective"], out["model"].nimg.item() / 1000
    return record.objective


if __name__ == "__main__":
    main()
