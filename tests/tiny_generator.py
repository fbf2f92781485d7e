"""A randomly initialised tiny generator (no training), wrapped like a loaded export."""

from hydra.utils import instantiate
from omegaconf import OmegaConf

from gp3d.inference.portable import LoadedGenerator
from tests.helpers import TINY, compose_train


def tiny_generator(tmp_path, c_dim: int = 3) -> LoadedGenerator:
    cfg = compose_train(
        ["experiment=smoke", *TINY, f"model.c_dim={c_dim}", "model.kd_dim=0"],
        tmp_path / "run",
        tmp_path / "data",
    )
    G = instantiate(cfg.model.generator).eval().requires_grad_(False)
    return LoadedGenerator(G=G, config=OmegaConf.to_container(cfg.model.generator, resolve=True))


def save_tiny_generator(tmp_path, path, c_dim: int = 3, seed: int = 0):
    """A tiny generator (weights from ``seed``) written as a portable generator file at ``path``."""
    import torch

    from gp3d.inference.portable import EXPORT_FORMAT, EXPORT_VERSION
    from gp3d.utils.checkpoint_io import atomic_torch_save

    torch.manual_seed(seed)
    g = tiny_generator(tmp_path, c_dim=c_dim)
    payload = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "config": g.config,
        "state_dict": g.G.state_dict(),
        "meta": {"kimg": float(seed)},
    }
    atomic_torch_save(payload, path)
    return path
