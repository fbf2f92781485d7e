"""Config checks that need no data and no compute: run by ``gp3d.train`` before anything is built.

Each problem names the setting and the fix; all problems are reported at once. The checks that
need the dataset manifest (class count, depth maps, teacher features) stay in
``gp3d.train.resolve_against_data``.
"""

from omegaconf import DictConfig


class ConfigError(ValueError):
    """The composed config contradicts itself or the dataset."""


def _get(cfg: DictConfig, key: str, default=None):
    node = cfg
    for part in key.split("."):
        if node is None or part not in node:
            return default
        node = node[part]
    return node


def _camera_problems(cfg: DictConfig) -> list[str]:
    out = []
    near, far = _get(cfg, "camera.near"), _get(cfg, "camera.far")
    if near is not None and far is not None and not 0 <= near < far:
        out.append(f"camera.near={near} / camera.far={far}: need 0 <= near < far; swap them")
    for name, spec in (_get(cfg, "camera.prior") or {}).items():
        if name.startswith("_") or not hasattr(spec, "get"):
            continue
        lo, hi = spec.get("min"), spec.get("max")
        if lo is not None and hi is not None and lo > hi:
            out.append(f"camera.prior.{name}: min={lo} > max={hi}; swap them")
        if spec.get("std") is not None and spec.get("std") < 0:
            out.append(f"camera.prior.{name}.std={spec.get('std')} must be >= 0")
    fov = _get(cfg, "camera.prior.fov")
    if fov is not None and hasattr(fov, "get"):
        for k in ("min", "max", "mean"):
            v = fov.get(k)
            if v is not None and not 0 < v < 180:
                out.append(f"camera.prior.fov.{k}={v}: a field of view is in (0, 180) degrees")
    return out


def config_problems(cfg: DictConfig) -> list[str]:
    """Every inconsistency found in ``cfg`` (empty when it is fine). Pure: reads ``cfg`` only."""
    out: list[str] = []
    res = _get(cfg, "data.resolution")
    batch = _get(cfg, "data.batch_size")
    patch = _get(cfg, "model.patch_resolution")
    if res is not None and (res < 4 or res & (res - 1)):
        out.append(f"data.resolution={res} must be a power of two >= 4 (e.g. 64, 128, 256)")
    if res is not None and patch is not None and patch > res:
        out.append(
            f"model.patch_resolution={patch} is larger than the images (data.resolution={res}); "
            f"set model.patch_resolution <= {res}"
        )
    if patch is not None and patch < 4:
        out.append(f"model.patch_resolution={patch} must be >= 4")
    min_scale = _get(cfg, "model.module.patch_min_scale")
    if min_scale is not None and not 0 < min_scale <= 1:
        out.append(f"model.module.patch_min_scale={min_scale} must be in (0, 1]")
    if batch is not None and batch < 1:
        out.append(f"data.batch_size={batch} must be >= 1")
    devices, nodes = _get(cfg, "trainer.devices", 1), _get(cfg, "trainer.num_nodes", 1) or 1
    if isinstance(devices, int) and devices > 0 and batch and batch % (devices * nodes):
        out.append(
            f"data.batch_size={batch} (the global batch) is not divisible by "
            f"trainer.devices={devices} x trainer.num_nodes={nodes}; use a multiple of "
            f"{devices * nodes}"
        )
    epoch = _get(cfg, "data.epoch_images")
    if epoch is not None and batch and epoch < batch:
        out.append(f"data.epoch_images={epoch} is smaller than data.batch_size={batch}")
    if (workers := _get(cfg, "data.num_workers")) is not None and workers < 0:
        out.append(f"data.num_workers={workers} must be >= 0")
    c_dim = _get(cfg, "model.c_dim")
    if c_dim not in (None, "auto") and int(c_dim) < 0:
        out.append(f"model.c_dim={c_dim} must be >= 0 or auto")
    for key in ("model.z_dim", "model.w_dim"):
        if (v := _get(cfg, key)) is not None and v < 1:
            out.append(f"{key}={v} must be >= 1")
    kd_dim = _get(cfg, "model.kd_dim")
    use_emb = bool(_get(cfg, "data.use_embeddings", False))
    if kd_dim not in (None, "auto") and int(kd_dim) > 0 and not use_emb:
        out.append(
            f"model.kd_dim={kd_dim} (distillation) needs teacher features: set "
            "data.use_embeddings=true (shards with emb.npy), or model.kd_dim=0"
        )
    use_depth = _get(cfg, "model.use_depth")
    in_ch = _get(cfg, "model.discriminator.in_channels")
    if use_depth is not None and isinstance(in_ch, int) and in_ch != (4 if use_depth else 3):
        out.append(
            f"model.use_depth={use_depth} but model.discriminator.in_channels={in_ch}; "
            f"set in_channels={4 if use_depth else 3}"
        )
    if use_depth is False and _get(cfg, "model.depth_adaptor") is not None:
        out.append(
            "model.depth_adaptor is set but model.use_depth=false (D sees no depth): "
            "set model.depth_adaptor=null or model.use_depth=true"
        )
    total = _get(cfg, "model.total_kimg")
    if total is not None and total <= 0:
        out.append(f"model.total_kimg={total} must be > 0")
    r1 = _get(cfg, "model.module.r1_interval")
    if r1 is not None and r1 < 1:
        out.append(f"model.module.r1_interval={r1} must be >= 1")
    gamma = _get(cfg, "model.module.r1_gamma")
    if gamma is not None and gamma < 0:
        out.append(f"model.module.r1_gamma={gamma} must be >= 0 (or null = auto)")
    for key in ("model.module.ema_kimg", "model.module.ema_rampup"):
        if (v := _get(cfg, key)) is not None and v < 0:
            out.append(f"{key}={v} must be >= 0 (or null)")
    for key in ("model.module.blur_sigma", "model.module.nerf_noise"):
        v = _get(cfg, key)
        if v is not None and any(x < 0 for x in v):
            out.append(f"{key}={list(v)} must be non-negative")
    kd_w = _get(cfg, "model.module.kd_weight")
    if kd_w is not None and any(x < 0 for x in kd_w):
        out.append(f"model.module.kd_weight={list(kd_w)} must be non-negative")
    for key in ("model.renderer.num_coarse", "model.renderer.num_fine"):
        if (v := _get(cfg, key)) is not None and v < 1:
            out.append(f"{key}={v} must be >= 1")
    for name, cb in (_get(cfg, "callbacks") or {}).items():
        every = cb.get("every_kimg") if hasattr(cb, "get") else None
        if every is not None and every < 0:
            out.append(f"callbacks.{name}.every_kimg={every} must be >= 0 (0 = off)")
    keep = _get(cfg, "callbacks.checkpoint.keep_last")
    if keep is not None and keep < 1:
        out.append(f"callbacks.checkpoint.keep_last={keep} must be >= 1 (or null = keep all)")
    return out + _camera_problems(cfg)


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` listing every problem of ``cfg`` (before any compute)."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
