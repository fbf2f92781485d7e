"""Running a depth model over image files: batched by input shape, maps written on threads.

A failing batch (e.g. out of memory) falls back to single images; an image that still fails
is counted (``error``) instead of stopping the run.
"""

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from data_prep import common
from data_prep.depth.convert import prediction_to_depth
from data_prep.depth.importer import DEPTH_DEGENERATE, PNG_LEVEL, write_atomic
from data_prep.depth.model import DepthModel
from data_prep.folder_source import depth_relpath
from data_prep.images import ImageSkip, load_rgb
from data_prep.tar_source import open_image


class _ImageInputs(Dataset):
    """Image files -> (index, model input, (H, W)) or (index, None, (reason, detail))."""

    def __init__(self, root: Path, relpaths: list[str], processor) -> None:
        self.root, self.relpaths, self.processor = root, relpaths, processor  # no model: workers

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, i: int):
        try:
            rgb = load_rgb(open_image(self.root, self.relpaths[i]))  # a file or a tar member
        except ImageSkip as skip:
            return i, None, (skip.reason, skip.detail)
        try:
            pixels = self.processor(images=Image.fromarray(rgb), return_tensors="pt")
            pixels = pixels["pixel_values"][0]
        except Exception as err:  # noqa: BLE001 - counted, never fatal
            return i, None, ("error", f"preprocessing: {type(err).__name__}: {err}")
        return i, pixels, rgb.shape[:2]


def _as_list(items):
    return items


def _write_map(out: Path, relpath: str, prediction, kind: str, max_ratio: float) -> tuple | None:
    try:
        depth = prediction_to_depth(prediction, kind, max_ratio)
    except ValueError as err:
        return relpath, DEPTH_DEGENERATE, str(err)
    write_atomic(out / depth_relpath(relpath), common.encode_relative_depth(depth, PNG_LEVEL))
    return None


def _predict(model: DepthModel, batch: list, todo: list[str]) -> tuple[list, list]:
    """Predictions of a batch; if the batch fails (e.g. out of memory), image by image, and an
    image that still fails is counted (``error``) instead of stopping the run."""
    try:
        return model.predict(torch.stack([b[1] for b in batch]), [b[2] for b in batch]), []
    except RuntimeError:
        pass
    preds, failed = [], []
    for b in batch:
        try:
            preds += model.predict(b[1][None], [b[2]])
        except RuntimeError as err:
            preds.append(None)
            failed.append((todo[b[0]], "error", f"depth model: {err}"))
    return preds, failed


def run_model(
    model: DepthModel, root: Path, out: Path, todo: list[str], batch_size: int, workers: int,
    max_ratio: float,
) -> Iterator[tuple[int, list]]:  # fmt: skip
    """(number of images done, their skips) per chunk of ``4 * batch_size`` images.

    Inputs keep the processor's aspect-preserving sizes, so a chunk is grouped by input shape
    and each group runs in batches; PNG encoding + writing overlaps on a thread pool (PIL's
    encoder releases the GIL).
    """
    loader = DataLoader(
        _ImageInputs(root, todo, model.processor), batch_size=4 * batch_size, num_workers=workers,
        collate_fn=_as_list, pin_memory=model.device.type == "cuda",
    )  # fmt: skip
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as writers:
        for chunk in loader:
            skips = [(todo[i], *why) for i, px, why in chunk if px is None]
            groups: dict[tuple, list] = {}
            for item in chunk:
                if item[1] is not None:
                    groups.setdefault(tuple(item[1].shape), []).append(item)
            futures = []
            for items in groups.values():
                for s in range(0, len(items), batch_size):
                    batch = items[s : s + batch_size]
                    preds, failed = _predict(model, batch, todo)
                    skips += failed
                    futures += [
                        writers.submit(_write_map, out, todo[b[0]], p, model.prediction, max_ratio)
                        for b, p in zip(batch, preds, strict=True)
                        if p is not None
                    ]
            skips += [r for f in futures if (r := f.result()) is not None]
            yield len(chunk), skips
