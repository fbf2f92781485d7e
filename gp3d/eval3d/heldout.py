"""A held-out split of the synthetic dataset, made by the data config's own ``prepare`` node.

gp3d never imports data_prep (README, Code map): the split is created by calling the
``prepare`` node of ``conf/data/<name>.yaml`` with another seed, another path, no teacher
features and ``novel_views`` > 0, exactly as training creates its data on first use. The maker
reuses a split that already exists with the same parameters.
"""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from gp3d.data.format import DatasetError, read_manifest
from gp3d.data.prepare import PREPARE_KEY, run_prepare

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def data_prepare_node(data_config: str):
    """The ``prepare`` node of ``conf/data/<data_config>.yaml`` (unresolved)."""
    if not (CONF_DIR / "data" / f"{data_config}.yaml").is_file():
        raise FileNotFoundError(f"no data config {CONF_DIR / 'data' / data_config}.yaml")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"data={data_config}"])
    finally:
        GlobalHydra.instance().clear()
    node = cfg.data.get(PREPARE_KEY)
    if node is None:
        raise ValueError(
            f"conf/data/{data_config}.yaml has no `prepare` node, so it cannot create a held-out "
            "split; use a data config that generates its data (synthetic)"
        )
    return node


def training_seed(data_path: str | None) -> int | None:
    """The seed recorded in the training data's manifest, when it can be read."""
    if not data_path:
        return None
    try:
        return read_manifest(data_path).get("seed")
    except (DatasetError, OSError):
        return None


def heldout_path(
    root: str | Path, resolution: int, num_samples: int, seed: int, views: int
) -> Path:
    return Path(root) / f"heldout{resolution}_n{num_samples}_s{seed}_v{views}"


def ensure_heldout_split(
    path: str | Path,
    resolution: int,
    num_samples: int,
    seed: int,
    novel_views: int = 1,
    data_config: str = "synthetic",
    train_seed: int | None = None,
) -> Path:
    """Create (or reuse) the held-out split at ``path``; refuses the training data's seed."""
    if train_seed is not None and seed == train_seed:
        raise ValueError(
            f"held-out seed {seed} is the training data's seed: the split would repeat training "
            "images; pass another --heldout-seed"
        )
    if novel_views < 1:
        raise ValueError("the held-out split needs novel_views >= 1 (novel-view ground truth)")
    node = data_prepare_node(data_config)
    run_prepare(
        node, path=str(path), resolution=resolution, num_samples=num_samples, seed=seed,
        teacher=None, novel_views=novel_views,
    )  # fmt: skip
    return Path(path)
