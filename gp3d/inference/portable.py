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
``_target_`` builder below instead of Hydra, and returns a :class:`LoadedGenerator` that renders
images, depth and meshes (``gp3d.inference.sampling``)::

    g = gp3d.load_generator("g.pt")
    out = g.render(g.latents([0, 1]), c=[3, 3], resolution=512, truncation_psi=0.7)
    mesh = g.mesh(g.latents([0]), c=[3])   # trimesh.Trimesh; mesh.export("car.glb")

Command line: ``python -m gp3d.export CHECKPOINT OUT.pt [--half]`` (``gp3d/export.py``).
"""

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import gp3d
from gp3d.inference import sampling as inference
from gp3d.models.generator import Generator
from gp3d.types import CameraParams, RenderOutput
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
    """What :func:`load_generator` returns: the EMA generator (eval mode, frozen), its config and
    metadata, with the inference protocol of spec 8.3 / 8.4 as methods.

    ``meta["data"]`` has the training data's path, resolution, class names and manifest hash
    when the checkpoint recorded them; ``meta["kimg"]`` the training progress. Classes ``c``
    are class indices (int, list, [B] tensor) or [B, c_dim] one-hots; None when unconditional.
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

    @property
    def num_classes(self) -> int:
        return self.G.c_dim

    def to(self, device: torch.device | str) -> "LoadedGenerator":
        self.G.to(device)
        return self

    def class_index(self, name_or_index: str | int) -> int:
        """A class index from an index or a class name recorded in the checkpoint."""
        if self.G.c_dim == 0:
            raise ValueError("this generator is unconditional: it takes no classes")
        if isinstance(name_or_index, int) or str(name_or_index).lstrip("-").isdigit():
            idx = int(name_or_index)
        elif name_or_index in (names := self.class_names or []):
            idx = names.index(name_or_index)
        else:
            raise ValueError(
                f"unknown class {name_or_index!r}; known: {self.class_names or 'none recorded'}"
            )
        if not 0 <= idx < self.G.c_dim:
            raise ValueError(f"class {idx} is out of range: the generator has {self.G.c_dim}")
        return idx

    def latents(self, seeds) -> torch.Tensor:
        """[len(seeds), z_dim] latents, one per seed."""
        return inference.latents(seeds, self.G.z_dim, self.device)

    def _inputs(self, z: torch.Tensor, c):
        z = z.to(self.device)
        return z, inference.one_hot(c, self.G.c_dim, z.shape[0], self.device)

    def planes(
        self,
        z: torch.Tensor,
        c=None,
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
        class_mean_samples: int = 256,
    ) -> torch.Tensor:
        """Tri-planes [B, 3, C, R, R]; truncation toward the class-wise mean w (spec 8.3)."""
        z, c = self._inputs(z, c)
        ws = inference.truncated_ws(
            self.G, z, c, truncation_psi, class_mean_samples=class_mean_samples
        )
        with torch.no_grad():
            return self.G.synthesis(ws, noise_mode=noise_mode)

    def cameras(self, z: torch.Tensor, c=None, seed: int = 0) -> CameraParams:
        """Posterior cameras: seeded prior samples through the camera generator (if any)."""
        z, c = self._inputs(z, c)
        return inference.posterior_cameras(self.G, z, c, seed)

    def mean_camera(self, c=None, num_samples: int = 1024, seed: int = 0) -> CameraParams:
        """The inference base camera, one per class in ``c`` (one for an unconditional G): the
        mean of ``num_samples`` posterior cameras (spec 8.4)."""
        from gp3d.inference.trajectories import posterior_mean_camera

        n = 1
        if c is not None:
            t = torch.as_tensor(c)
            n = t.shape[0] if t.is_floating_point() and t.dim() == 2 else t.numel()
        onehot = inference.one_hot(c, self.G.c_dim, n, self.device)
        return posterior_mean_camera(self.G, onehot, num_samples, seed)

    def render(
        self,
        z: torch.Tensor,
        c=None,
        camera: CameraParams | None = None,
        resolution: int | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
        seed: int = 0,
        chunk_rays: int | None = None,
        steps_multiplier: int = 1,
        far_offset: float = 0.0,
    ) -> RenderOutput:
        """Images (``.rgb`` [B, 3, H, W] in ~[-1, 1]) and metric depth (``.depth``) for latents
        z [B, z_dim], classes c and cameras (rendered as given; None = posterior samples drawn
        with ``seed``). ``chunk_rays`` bounds memory at large resolutions without changing the
        result. The original's inference renders use steps_multiplier=2, far_offset=1.0."""
        planes = self.planes(z, c, truncation_psi, noise_mode)
        if camera is None:
            camera = self.cameras(z, c, seed)
        if camera.batch_size != planes.shape[0]:
            raise ValueError(f"got {camera.batch_size} cameras for {planes.shape[0]} latents")
        return inference.render_planes(
            self.G, planes, camera, resolution, seed, chunk_rays, steps_multiplier, far_offset
        )

    def mesh(
        self,
        z: torch.Tensor,
        c=None,
        truncation_psi: float = 0.7,
        resolution: int = 256,
        side: float = 0.3,
        center=(0.0, 0.0, 0.0),
        threshold: float = 25.0,
        crop: bool = False,
        keep_largest: bool = False,
    ):
        """A vertex-coloured ``trimesh.Trimesh`` for one latent z [1, z_dim] (spec 8.3 defaults:
        psi 0.7, 256^3 grid over a cube of side 0.3, raw density threshold 25; the original's
        hard-coded ``crop`` is off by default)."""
        planes = self.planes(z, c, truncation_psi, "const")
        return inference.mesh_from_planes(
            self.G, planes, resolution, side, center, threshold, crop, keep_largest
        )


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


def save_generator(
    G: Generator,
    config: dict,
    out: str | os.PathLike,
    meta: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write an in-memory generator as a portable file (atomically); returns its path.

    ``config`` is the resolved ``_target_`` tree that builds ``G``'s architecture (e.g. the
    ``config`` of the :class:`LoadedGenerator` it came from: fine-tuned copies keep it).
    ``meta`` holds plain containers / tensors only (the file is read with weights_only=True).
    ``dtype`` (e.g. ``torch.float16``) casts floating-point weights to halve the file; buffers
    such as ``w_avg`` are cast too and are cast back to float32 on load by ``load_state_dict``.
    """
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu()
        for k, v in G.state_dict().items()
    }
    payload = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "config": config,
        "state_dict": state,
        "meta": {**(meta or {}), "gp3d_version": gp3d.__version__},
    }
    atomic_torch_save(payload, out)
    return Path(out)


def export_generator(
    checkpoint: str | os.PathLike, out: str | os.PathLike, dtype: torch.dtype | None = None
) -> Path:
    """Write the portable file for a training checkpoint (atomically); returns its path
    (``dtype``: see :func:`save_generator`)."""
    loaded = load_generator(checkpoint)
    return save_generator(loaded.G, loaded.config, out, loaded.meta, dtype)
