"""The manifest ``write_shards`` writes: classes, shards, depth and image conventions, source."""

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import common
from data_prep.folder_source import FolderIndex

GENERATOR_NAME = "data_prep.write_shards"
GENERATOR_VERSION = "1.0"
SKIPPED_NAME = "skipped.txt"  # the list of skipped images beside the manifest
IMAGE_DESCRIPTION = {
    "preprocessing": "centre crop to the short side, then PIL Lanczos resize (spec 9 step 4)",
    "conversion": "any mode to 8-bit RGB; EXIF orientation applied; alpha over white",
    "normalisation": "uint8 / 127.5 - 1",
}


def build_manifest(
    index: FolderIndex,
    params: dict[str, Any],
    records: list[dict[str, Any]],
    skipped: Counter,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of a run from its shard records (``write_one_shard`` results), skip
    counts and ``extra`` top-level fields."""
    class_counts = np.zeros(index.num_classes, dtype=np.int64)
    modes: Counter[str] = Counter()
    for r in records:
        for label, n in r["labels"].items():
            class_counts[int(label)] += n
        modes.update(r["modes"])
    shards = [
        {k: r[k] for k in ("name", "num_samples", "bytes", "sha256")}
        for r in sorted(records, key=lambda r: r["index"])
        if r["name"] is not None
    ]
    image_key = params["image_format"]
    return {
        "format": {"name": common.FORMAT_NAME, "version": common.FORMAT_VERSION},
        "generator": {"name": GENERATOR_NAME, "version": GENERATOR_VERSION, "params": params},
        "seed": params["seed"],
        "num_samples": int(sum(s["num_samples"] for s in shards)),
        "resolution": params["resolution"],
        "num_classes": index.num_classes,
        "class_names": list(index.class_names),
        "class_folders": list(index.class_folders),
        "class_counts": class_counts.tolist(),
        "keys": [image_key, "depth.png", "cls"] + ["meta.json"] * params["write_meta"],
        "shards": shards,
        "depth": {
            **common.DEPTH_DESCRIPTION,
            "preprocessing": IMAGE_DESCRIPTION["preprocessing"]
            + "; values kept as stored, Lanczos ringing clipped to [0, 65535]",
            "estimate": depth_info(Path(params["depth_dir"])),
        },
        "embedding_dim": None,
        "image": {"key": image_key, **IMAGE_DESCRIPTION},
        "assignment": {
            "method": "numpy.random.default_rng(seed).permutation of the records sorted by "
            "relative path; shard i = positions [i * shard_size, (i + 1) * shard_size); "
            "sample key = position; shards whose images were all skipped are omitted",
            "seed": params["seed"],
            "shard_size": params["shard_size"],
        },
        "source_modes": dict(sorted(modes.items())),  # original PIL modes of the kept images
        "skipped": dict(sorted(skipped.items())),
        "num_skipped": int(sum(skipped.values())),
        "skipped_list": SKIPPED_NAME,
        **extra,
    }


def depth_info(depth_dir: Path) -> dict[str, Any] | None:
    """How the maps were made, from ``estimate_depth``'s ``depth_info.json`` (None: unknown,
    e.g. maps of a release used in place)."""
    try:
        info = json.loads((depth_dir / "depth_info.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return {k: info.get(k) for k in ("estimator", "num_maps", "skipped")}
