"""Which images go into which shard: selection-file filtering and the seeded assignment.

Assignment is deterministic: the records, sorted by relative path, are permuted with
``numpy.random.default_rng(seed)`` and shard ``i`` holds positions
``[i * shard_size, (i + 1) * shard_size)`` (see ``data_prep/write_shards.py``).
"""

import hashlib
import math
import os

import numpy as np

from data_prep.folder_source import FolderIndex, ImageRecord, read_selection
from data_prep.shards.worker import ShardJob

NOT_SELECTED_FOUND = "selected_not_found"  # a --select line that names no indexed image


def select_records(
    index: FolderIndex, select: str | os.PathLike | None
) -> tuple[list[ImageRecord], list[tuple[str, str]]]:
    """Records kept by a selection file (all without one) and the selection lines not found.

    Selection lines are paths relative to the index root (``select_instances`` writes them);
    a leading ``train/`` (paths relative to the source folder) is tolerated.
    """
    if select is None:
        return list(index.records), []
    by_path = {r.relpath: r for r in index.records}
    kept, missing = {}, []
    for line in read_selection(select):
        rel = line if line in by_path else line.removeprefix("train/")
        if rel in by_path:
            kept[rel] = by_path[rel]
        else:
            missing.append((line, NOT_SELECTED_FOUND))
    return [kept[k] for k in sorted(kept)], missing


def assign(records: list[ImageRecord], shard_size: int, seed: int) -> list[ShardJob]:
    """Deterministic shards: a seeded permutation of the (sorted) records, cut into slices."""
    order = np.random.default_rng(seed).permutation(len(records))
    jobs = []
    for i in range(math.ceil(len(records) / shard_size)):
        positions = range(i * shard_size, min((i + 1) * shard_size, len(records)))
        picked = (records[order[pos]] for pos in positions)
        items = tuple(
            (f"{pos:08d}", r.relpath, r.label, r.offset, r.size)
            for pos, r in zip(positions, picked)
        )
        jobs.append(ShardJob(i, items))
    return jobs


def records_fingerprint(records: list[ImageRecord]) -> str:
    """sha256 of the (relpath, label) list: a run's parameters change when the images do."""
    digest = hashlib.sha256()
    for r in records:
        digest.update(f"{r.relpath}\t{r.label}\n".encode())
    return digest.hexdigest()
