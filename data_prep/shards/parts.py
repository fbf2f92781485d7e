"""One output folder written by N machines: ``write_shards --parts N --part I`` (e.g. a SLURM array).

Every part computes the same global assignment (``assignment.assign``: the sorted records,
permuted with the seed, cut into shards) and writes the contiguous block of shard indices
:func:`part_shards` gives it, under the same global names as a single-machine run, so parts
never collide and the merged dataset is byte-identical to one run of the same command.

Files, all in the hidden work folder of ``DEST`` (``shards/worker.py`` ``WORK_DIR``):

- ``parts.json`` (the *header*): ``--parts``, the run's parameters and its dataset-level facts
  (classes, index-level skips, source description). The first part to start creates it
  atomically (hard link of a finished temp file); every other part must match it, so a changed
  ``--parts`` or other settings on the same ``DEST`` are an error, not a silent mix.
- ``part-IIIII-of-NNNNN.json``: part I's shard records, written when it has finished.

No manifest exists until ``python -m data_prep.merge_parts DEST`` has checked that every part
finished with the same header (``merge_parts.py``); training and ``data_prep.validate`` refuse the
folder until then (``gp3d.data.format.UNMERGED_PARTS_FILE``).
"""

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from data_prep import common
from data_prep.shards.worker import WORK_DIR

HEADER_NAME = "parts.json"
assert f"{WORK_DIR}/{HEADER_NAME}" == common.UNMERGED_PARTS_FILE  # gp3d detects unmerged runs


class PartsMismatchError(FileExistsError):
    """This part does not belong to the ``--parts`` run already in the output folder."""


def part_shards(num_shards: int, parts: int, part: int) -> range:
    """Shard indices of part ``part`` of ``parts``: contiguous, disjoint, sizes differ by <= 1."""
    if parts < 1 or not 0 <= part < parts:
        raise ValueError(f"need --parts >= 1 and 0 <= --part < --parts (got {part} of {parts})")
    return range(part * num_shards // parts, (part + 1) * num_shards // parts)


def header_path(out: Path) -> Path:
    return out / WORK_DIR / HEADER_NAME


def done_path(out: Path, part: int, parts: int) -> Path:
    return out / WORK_DIR / f"part-{part:05d}-of-{parts:05d}.json"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as err:
        raise common.DatasetFormatError(f"{path} is unreadable ({err}): delete it") from err


def read_header(out: Path) -> dict[str, Any] | None:
    return _read_json(header_path(out))


def _write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` to a finished hidden temp file beside ``path`` and return the temp path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = common.temp_path(path)
    with open(tmp, "w") as f:
        json.dump(obj, f, sort_keys=True, indent=1)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def claim_header(out: Path, header: dict[str, Any]) -> None:
    """Create the header, or check that the existing one is this run's (else raise)."""
    path = header_path(out)
    tmp = _write_json(path, header)
    try:
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic create-if-absent: concurrent parts agree on one header
    finally:
        tmp.unlink(missing_ok=True)
    old = read_header(out)
    if old == header:
        return
    if old is None or "parts" not in old:
        raise common.DatasetFormatError(f"{path} vanished or is damaged while starting: retry")
    if old["parts"] != header["parts"]:
        raise PartsMismatchError(
            f"{out} was started with --parts {old['parts']}, this run says --parts "
            f"{header['parts']}: every part of one output folder needs the same --parts. Re-run "
            f"with --parts {old['parts']}, or delete {out} (or choose another --out) to start over."
        )
    changed = sorted(k for k in set(old["params"]) | set(header["params"])
                     if old["params"].get(k) != header["params"].get(k))  # fmt: skip
    what = f"settings {changed}" if changed else "source description"
    raise PartsMismatchError(
        f"{out} holds a --parts run with other {what} (see {path}): every part must run the "
        f"same command. Re-run with the same settings, or delete {out} (or choose another --out)."
    )


def write_done(out: Path, parts: int, part: int, record: dict[str, Any]) -> Path:
    """Mark part ``part`` finished (atomically) with its shard records."""
    path = done_path(out, part, parts)
    os.replace(_write_json(path, record), path)
    return path


def read_done(out: Path, parts: int, part: int) -> dict[str, Any] | None:
    return _read_json(done_path(out, parts=parts, part=part))


def missing_parts(out: Path, parts: int) -> list[int]:
    return [i for i in range(parts) if not done_path(out, i, parts).is_file()]


def unmerged_status(out: Path) -> str | None:
    """A sentence on an unmerged parts run in ``out`` (None: there is none)."""
    try:
        header = read_header(out)
    except common.DatasetFormatError as err:
        return str(err)
    if header is None:
        return None
    n = header["parts"]
    missing = missing_parts(out, n)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        state = f"{n - len(missing)} of {n} parts finished (still running or to run: {shown})"
    else:
        state = f"all {n} parts finished"
    return (
        f"{out} is an unmerged `write_shards --parts {n}` run: {state}; run "
        f"`python -m data_prep.merge_parts {out}` once every part has finished"
    )
