"""The output folder of ``estimate_depth``: parameters for resuming, the info and skip files.

``<out>/.estimate-depth.json`` holds the run's parameters (a re-run with others is refused
unless ``overwrite``); ``depth_info.json`` (how the maps were made, read by ``write_shards``)
and ``depth_skipped.txt`` are written when a run finishes.
"""

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from data_prep import common
from data_prep.depth.convert import max_ratio_record
from data_prep.depth.importer import write_atomic
from data_prep.depth.model import DepthModel

INFO_NAME, SKIPPED_NAME, STATE_NAME = "depth_info.json", "depth_skipped.txt", ".estimate-depth.json"
INFO_FORMAT = {"name": "gp3d-depth-maps", "version": 1}


def prepare_depth_out(out: Path, image_root: Path, params: dict[str, Any], overwrite: bool) -> None:
    """Make ``out`` ready for a run with ``params``: fresh, resuming, or overwritten."""
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() == image_root.resolve() or image_root.resolve() in out.resolve().parents:
        raise ValueError(f"--out {out} must not be inside the image folder {image_root}")
    state = out / STATE_NAME
    try:
        old = json.loads(state.read_text())
    except (OSError, json.JSONDecodeError):
        old = None
    maps = [p for p in out.rglob("*_depth.png")] if old != params else []
    if old != params and (old is not None or maps):
        if not overwrite:
            raise FileExistsError(
                f"{out} holds depth maps made with other parameters ({old}). Re-run with the "
                "same parameters to resume, pass --overwrite to delete them, or choose another "
                "--out."
            )
        for p in maps:
            p.unlink(missing_ok=True)  # every rank of predict_depth prepares the same folder
        for name in (INFO_NAME, SKIPPED_NAME):
            (out / name).unlink(missing_ok=True)
    for p in out.rglob("*.tmp-*"):  # temp files of a killed run
        p.unlink(missing_ok=True)
    (out / INFO_NAME).unlink(missing_ok=True)  # rewritten when this run finishes
    tmp = common.temp_path(state)
    tmp.write_text(json.dumps(params, sort_keys=True, indent=1))
    os.replace(tmp, state)


def finish_depth_out(
    out: Path,
    info: dict[str, Any],
    num_images: int,
    num_maps: int,
    skips: list[tuple[str, str, str]],
) -> dict[str, int]:
    """Write the skip list and ``depth_info.json``; returns the skips per reason."""
    counts = Counter(reason for _, reason, _ in skips)
    lines = "".join(f"{rel}\t{reason}\t{' '.join(d.split())}\n" for rel, reason, d in skips)
    write_atomic(out / SKIPPED_NAME, ("# relpath\treason\tdetail\n" + lines).encode())
    info = {
        "format": INFO_FORMAT,
        **info,
        "encoding": common.DEPTH_DESCRIPTION["encoding"],
        "normalisation": common.DEPTH_DESCRIPTION["normalisation"],
        "naming": "<image relpath without extension>_depth.png, at the image's size",
        "num_images": num_images,
        "num_maps": num_maps,
        "skipped": dict(sorted(counts.items())),
    }
    write_atomic(out / INFO_NAME, json.dumps(info, indent=2).encode())
    return dict(sorted(counts.items()))


def model_params(estimator: DepthModel, prediction: str, max_ratio: float) -> dict[str, Any]:
    """The parameters a resumed model run must share (``.estimate-depth.json``)."""
    model = estimator.source
    source = str(Path(model).resolve()) if Path(model).is_dir() else model
    params = {"method": "model", "source": source, "prediction": prediction,
              "max_ratio": max_ratio_record(max_ratio),
              "seed": estimator.seed if estimator.is_random else None}  # fmt: skip
    if estimator.is_leres:  # the weights file's path: same path, same maps (hashing is slow)
        weights = estimator.weights and str(Path(estimator.weights).expanduser().resolve())
        params.update(weights=weights, input_size=estimator.input_size)
    return params
