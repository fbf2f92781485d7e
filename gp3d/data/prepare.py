"""Creating a dataset on first use, through the data config's ``prepare`` node.

gp3d never imports data_prep: a data config that knows how to make its dataset names the maker
as a ``_target_`` (``conf/data/synthetic.yaml`` names ``data_prep.synthetic.ensure_synthetic_dataset``),
so the one arrow from gp3d to data_prep lives in the config that wires the run, not in the code.
"""

import os
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from gp3d.data.format import MANIFEST_NAME

PREPARE_KEY = "prepare"


def run_prepare(node: Any, **overrides: Any) -> Any:
    """Call a ``prepare`` node (a resolved mapping with ``_target_``), ``overrides`` replacing its
    arguments; returns what the maker returns (the dataset folder)."""
    node = node.copy() if OmegaConf.is_config(node) else OmegaConf.create(node)
    with open_dict(node):
        for key, value in overrides.items():  # before resolving: they may replace interpolations
            node[key] = value
    return instantiate(OmegaConf.to_container(node, resolve=True), _convert_="all")


def prepare_dataset(data_cfg: DictConfig, wait_s: float = 1800.0) -> DictConfig:
    """Create the dataset of ``data_cfg`` if its ``prepare`` node says how (first process of the
    job only; idempotent); other DDP processes wait for the manifest, which is written last.
    Returns the data config without ``prepare``, ready to instantiate."""
    prepare = data_cfg.get(PREPARE_KEY)
    out = data_cfg.copy()
    with open_dict(out):
        out.pop(PREPARE_KEY, None)
    if prepare is None:
        return out
    if os.environ.get("LOCAL_RANK", "0") == "0" and int(os.environ.get("NODE_RANK", "0")) == 0:
        run_prepare(prepare)
    else:
        manifest = Path(data_cfg.path) / MANIFEST_NAME
        deadline = time.time() + wait_s
        while not manifest.exists() and time.time() < deadline:
            time.sleep(2)
    return out
