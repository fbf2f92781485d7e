"""Building lists of callbacks / loggers from Hydra config groups (LHT pattern)."""

from hydra.utils import instantiate
from omegaconf import DictConfig


def instantiate_list(cfg: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a mapping (null entries are skipped)."""
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"expected a mapping of _target_ configs, got {type(cfg).__name__}")
    return [
        instantiate(node)
        for node in cfg.values()
        if isinstance(node, DictConfig) and "_target_" in node
    ]
