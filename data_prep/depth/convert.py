"""Monocular predictions -> the shard format's relative depth (pure functions; spec 5.1).

gp3d stores *depth* (larger = farther), scaled per image so its maximum is 60000 (the LeReS dump
convention, ``common.encode_relative_depth``). Estimators predict one of two things:

- ``"depth"``: distance (metric models: Depth-Anything-V2 Metric, ZoeDepth, GLPN; LeReS).
  Kept as is; values below ``max / max_ratio`` (and non-finite ones) are raised to that floor,
  so the map is positive and its range is at most ``max_ratio``.
- ``"disparity"``: inverse depth, larger = **nearer** (relative Depth-Anything V1/V2, DPT /
  MiDaS). Such outputs are affine-invariant (``a / z + b`` with unknown ``b``), so the exact
  depth cannot be recovered; we use the usual approximation ``depth = 1 / d'`` where
  ``d' = disparity / max(disparity)`` clipped to ``[1 / max_ratio, 1]``: the nearest pixel gets
  depth 1, everything at or beyond ``max_ratio`` times that distance (sky, disparity ~0) gets
  ``max_ratio``. After the 60000 scaling the nearest pixel is stored as ``60000 / max_ratio``.

The original's skewed geometry came from LeReS; its authors name metric estimators as the fix,
which is why ``"depth"`` models need no inversion heuristic. LeReS (``--model leres``) defaults to
``max_ratio = inf`` (no floor): its maps are then exactly the release's dumps, depth / max * 60000.
"""

import math

import numpy as np
from PIL import Image

DEPTH, DISPARITY = "depth", "disparity"
PREDICTION_KINDS = (DEPTH, DISPARITY)
DEFAULT_MAX_RATIO = 10.0  # far / near range kept from a disparity (or metric) prediction
NO_FLOOR_MODELS = ("leres", "random:leres")  # depth kept whole, as the original's LeReS dumps


def default_max_ratio(model: str | None) -> float:
    """``--max-ratio``'s default: no floor (inf) for LeReS, else :data:`DEFAULT_MAX_RATIO`."""
    return math.inf if model in NO_FLOOR_MODELS else DEFAULT_MAX_RATIO


def max_ratio_record(max_ratio: float) -> float | None:
    """``max_ratio`` for JSON records: ``None`` stands for no floor (inf is not JSON)."""
    return max_ratio if math.isfinite(max_ratio) else None


def infer_prediction_kind(config) -> str:
    """What a transformers depth model predicts, from its config; ValueError when unknown.

    Depth-Anything: ``depth_estimation_type`` ``"relative"`` -> disparity, ``"metric"`` -> depth;
    DPT (MiDaS family) -> disparity; ZoeDepth, GLPN, Prompt-Depth-Anything -> metric depth.
    """
    model_type = getattr(config, "model_type", None)
    if model_type == "depth_anything":
        kind = getattr(config, "depth_estimation_type", "relative")
        return DEPTH if kind == "metric" else DISPARITY
    if model_type == "dpt":
        return DISPARITY
    if model_type in ("zoedepth", "glpn", "prompt_depth_anything"):
        return DEPTH
    raise ValueError(
        f"cannot tell whether a {model_type!r} model predicts depth or disparity: pass "
        "--prediction depth (larger = farther) or --prediction disparity (larger = nearer)"
    )


def prediction_to_depth(
    prediction: np.ndarray, kind: str, max_ratio: float = DEFAULT_MAX_RATIO
) -> np.ndarray:
    """Positive float64 relative depth ``[H, W]`` (larger = farther) of a prediction.

    Raises ValueError for a degenerate prediction (no finite positive value), which callers
    count as a failed estimate rather than writing a meaningless map.
    """
    if kind not in PREDICTION_KINDS:
        raise ValueError(f"prediction kind must be one of {PREDICTION_KINDS}, not {kind!r}")
    if max_ratio <= 1:
        raise ValueError(f"max_ratio must be > 1, got {max_ratio}")
    p = np.asarray(prediction, dtype=np.float64)
    p = np.where(np.isfinite(p), p, 0.0)
    peak = float(p.max()) if p.size else 0.0
    if peak <= 0:
        raise ValueError("prediction has no finite positive value")
    if kind == DEPTH:
        return np.maximum(p, peak / max_ratio)  # max_ratio = inf: no floor
    if not math.isfinite(max_ratio):
        raise ValueError("inverting disparity needs a finite max_ratio")
    return 1.0 / np.clip(p / peak, 1.0 / max_ratio, 1.0)


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a depth map to ``(width, height)`` in float (keeps the dtype's range;
    bilinear never overshoots, unlike the Lanczos used later for the shards)."""
    w, h = size
    if depth.shape[:2] == (h, w):
        return depth
    f = Image.fromarray(np.ascontiguousarray(depth, dtype=np.float32), mode="F")
    out = np.asarray(f.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float64)
    if depth.dtype == np.uint16:
        return np.clip(np.rint(out), 0, 65535).astype(np.uint16)
    return out
