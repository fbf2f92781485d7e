"""Portable generator files: the EMA generator + its resolved config, loadable without Hydra.

A training checkpoint (Lightning ``.ckpt``) holds G, D, G_ema, optimiser states and the resolved
model config (``gp3d_model_config``). :func:`export_generator` keeps only what inference needs::

    {"format": "gp3d-generator", "version": 1,
     "config": <resolved model.generator node: nested dicts with "_target_">,
     "state_dict": <G_ema state dict>,
     "meta": {"kimg": ..., "data": {path, resolution, num_classes, class_names, ...},
              "source": <checkpoint path>, "gp3d_version": ...}}

Both kinds load with :func:`load_generator` (``torch.load(weights_only=True)``: plain
tensors and containers only, no pickled code), which rebuilds the networks with the small
``_target_`` builder below instead of Hydra.
"""

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import gp3d
from gp3d.models.generator import Generator
from gp3d.utils.checkpoint_io import atomic_torch_save

EXPORT_FORMAT = "gp3d-generator"
EXPORT_VERSION = 1
_EMA_PREFIX = "G_ema."


class CheckpointError(ValueError):
    """A file is not a gp3d checkpoint or generator export, or lacks what is needed."""


def build(node: Any) -> Any:
    """Instantiate a resolved config tree: dicts with ``_target_`` become objects (recursively);
    ``_partial_: true`` gives a ``functools.partial``. A tiny, dependency-free subset of
    ``hydra.utils.instantiate`` for the plain containers stored in checkpoints."""
    if isinstance(node, list | tuple):
        return [build(x) for x in node]
    if not isinstance(node, dict):
        return node
    kwargs = {k: build(v) for k, v in node.items() if not k.startswith("_")}
    if "_target_" not in node:
        return kwargs
    module_name, _, attr = node["_target_"].rpartition(".")
    target = getattr(importlib.import_module(module_name), attr)
    if node.get("_partial_", False):
        import functools

        return functools.partial(target, **kwargs)
    return target(**kwargs)


@dataclass
class LoadedGenerator:
    """What :func:`load_generator` returns: the EMA generator (eval mode, frozen) and metadata.

    ``meta["data"]`` has the training data's path, resolution, class names and manifest hash
    when the checkpoint recorded them (runs since this file existed); ``meta["kimg"]`` the
    training progress.
    """

    G: Generator
    config: dict
    meta: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    @property
    def class_names(self) -> list[str] | None:
        return self.meta.get("data", {}).get("class_names")


def _read(path: str | os.PathLike, map_location) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; pass a training checkpoint (e.g. "
            "outputs/train/<run>/checkpoints/last.ckpt) or a file from `python -m gp3d.export`"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated file, not a torch file, pickled code, ...
        raise CheckpointError(f"cannot read {path} as a gp3d checkpoint: {err}") from err


def _from_lightning(ckpt: dict, path: Path) -> tuple[dict, dict, dict]:
    if "gp3d_model_config" not in ckpt:
        raise CheckpointError(
            f"{path} has no 'gp3d_model_config': it was not written by gp3d.train (or by a "
            "version before configs were stored), so the networks cannot be rebuilt"
        )
    state = {
        k[len(_EMA_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(_EMA_PREFIX)
    }
    if not state:
        raise CheckpointError(f"{path} holds no G_ema weights")
    nimg = ckpt["state_dict"].get("nimg")
    meta = {
        "kimg": float(nimg) / 1000.0 if nimg is not None else None,
        "data": ckpt.get("gp3d_data_info") or {},
        "source": str(path),
        "global_step": ckpt.get("global_step"),
    }
    return ckpt["gp3d_model_config"]["generator"], state, meta


def load_generator(
    path: str | os.PathLike, device: torch.device | str = "cpu", strict: bool = True
) -> LoadedGenerator:
    """Load the EMA generator from a training checkpoint or a :func:`export_generator` file."""
    path = Path(path)
    ckpt = _read(path, map_location="cpu")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a gp3d checkpoint (top level is {type(ckpt)})")
    if ckpt.get("format") == EXPORT_FORMAT:
        if ckpt.get("version") != EXPORT_VERSION:
            raise CheckpointError(
                f"{path} is a {EXPORT_FORMAT} v{ckpt.get('version')} file; this gp3d reads "
                f"v{EXPORT_VERSION}"
            )
        config, state, meta = ckpt["config"], ckpt["state_dict"], dict(ckpt.get("meta", {}))
    elif "state_dict" in ckpt:
        config, state, meta = _from_lightning(ckpt, path)
    else:
        raise CheckpointError(f"{path} is neither a gp3d training checkpoint nor an export")
    G = build(config)
    if not isinstance(G, Generator):
        raise CheckpointError(f"{path}: config builds a {type(G).__name__}, not a Generator")
    G.load_state_dict(state, strict=strict)
    G.eval().requires_grad_(False).to(device)
    return LoadedGenerator(G=G, config=config, meta=meta)


def export_generator(
    checkpoint: str | os.PathLike, out: str | os.PathLike, dtype: torch.dtype | None = None
) -> Path:
    """Write the portable file for a training checkpoint (atomically); returns its path.

    ``dtype`` (e.g. ``torch.float16``) casts floating-point weights to halve the file; buffers
    such as ``w_avg`` are cast too and are cast back to float32 on load by ``load_state_dict``.
    """
    loaded = load_generator(checkpoint)
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
        for k, v in loaded.G.state_dict().items()
    }
    meta = {**loaded.meta, "gp3d_version": gp3d.__version__}
    payload = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "config": loaded.config,
        "state_dict": state,
        "meta": meta,
    }
    atomic_torch_save(payload, out)
    return Path(out)
