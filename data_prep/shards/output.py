"""The output folder of ``write_shards``: reuse a finished dataset, resume, or overwrite.

Finished shards are recorded in the hidden ``<out>/.write-shards/`` folder with the run's
parameters (``state.json``); the manifest is written last, so an interrupted run never looks
complete. One process per output folder.
"""

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from data_prep import common
from data_prep.folder_source import FolderIndex
from data_prep.shards import parts as shard_parts
from data_prep.shards.manifest import GENERATOR_NAME, SKIPPED_NAME, build_manifest
from data_prep.shards.worker import WORK_DIR

STATE_NAME = "state.json"


def _is_ours(name: str) -> bool:
    return (
        name.startswith(".")
        or name in (common.MANIFEST_NAME, SKIPPED_NAME)
        or (name.startswith("shard-") and name.endswith(".tar"))
    )


def finished_params(out: Path) -> dict[str, Any] | None:
    """The parameters of the finished ``write_shards`` dataset in ``out`` (None: none)."""
    try:
        manifest = common.read_manifest(out)
    except common.DatasetError:
        return None
    gen = manifest["generator"]
    return gen.get("params") if gen.get("name") == GENERATOR_NAME else None


def _clear(out: Path) -> None:
    (out / common.MANIFEST_NAME).unlink(missing_ok=True)  # first: the old dataset is now invalid
    for p in out.iterdir():
        if p.name.startswith("shard-") and p.name.endswith(".tar") or p.name == SKIPPED_NAME:
            p.unlink()
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)


def remove_temp_files(out: Path, shard_names: list[str] | None = None) -> None:
    """Delete temp files left by killed writers: all of them, or (``shard_names``) only those of
    these shards and their records, since other parts of a ``--parts`` run may be writing."""
    prefixes = None if shard_names is None else tuple(f".{n}." for n in shard_names)
    for folder in (out, out / WORK_DIR):
        if folder.is_dir():
            for p in folder.iterdir():
                if ".tmp-" in p.name and (prefixes is None or p.name.startswith(prefixes)):
                    p.unlink(missing_ok=True)


def prepare_output(out: Path, params: dict[str, Any], overwrite: bool) -> None:
    """Make ``out`` ready for a run with ``params``: fresh, or resuming the same parameters."""
    out.mkdir(parents=True, exist_ok=True)
    remove_temp_files(out)  # left by a killed run (one process per folder)
    state = out / WORK_DIR / STATE_NAME
    try:
        old = json.loads(state.read_text())
    except (OSError, json.JSONDecodeError):
        old = None
    foreign = sorted(p.name for p in out.iterdir() if not _is_ours(p.name))
    header = shard_parts.read_header(out)
    if header is not None and not overwrite:
        raise FileExistsError(
            f"{out} holds a `write_shards --parts {header['parts']}` run: finish it with the same "
            "--parts (then `python -m data_prep.merge_parts`), pass --overwrite to replace it, "
            "or choose another --out."
        )
    has_data = any(p.name.endswith(".tar") or p.name == common.MANIFEST_NAME for p in out.iterdir())
    if old != params and (foreign or has_data or old is not None):
        if not overwrite:
            what = (
                f"other files ({', '.join(foreign[:5])})"
                if foreign
                else "an unfinished run with other parameters"
                if old is not None
                else "shards or a manifest it cannot reuse (other parameters, or damaged)"
            )
            raise FileExistsError(
                f"{out} holds {what}. Re-run with the same parameters to resume, pass "
                "--overwrite to replace it, or choose another --out."
            )
        if foreign:
            raise FileExistsError(
                f"{out} holds files write_shards did not make ({', '.join(foreign[:5])}); "
                "refusing to overwrite them: choose an empty --out"
            )
        _clear(out)
    (out / common.MANIFEST_NAME).unlink(missing_ok=True)  # stale manifest of the same params
    state.parent.mkdir(parents=True, exist_ok=True)
    tmp = common.temp_path(state)
    tmp.write_text(json.dumps(params, sort_keys=True, indent=1))
    os.replace(tmp, state)


def write_skipped(out: Path, rows: list[tuple[str, str, str]]) -> None:
    """``out/skipped.txt`` (atomically): one ``relpath, reason, detail`` line per skipped image."""
    path = out / SKIPPED_NAME
    tmp = common.temp_path(path)
    with open(tmp, "w") as f:
        f.write(
            "# relpath\treason\tdetail (images write_shards left out; reasons counted in "
            "manifest.json 'skipped')\n"
        )
        f.writelines(
            f"{rel}\t{reason}\t{' '.join(detail.split())}\n" for rel, reason, detail in rows
        )
    os.replace(tmp, path)


def prepare_part_output(out: Path, header: dict[str, Any], shard_names: list[str]) -> None:
    """Make ``out`` ready for one part of a ``--parts`` run (``shards/parts.py``): never deletes
    another part's files, so ``--overwrite`` has no meaning here."""
    out.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in out.iterdir() if not _is_ours(p.name))
    if foreign:
        raise FileExistsError(
            f"{out} holds files write_shards did not make ({', '.join(foreign[:5])}): choose an "
            "empty --out"
        )
    if (out / WORK_DIR / STATE_NAME).is_file():
        raise FileExistsError(
            f"{out} holds an unfinished single-machine run: finish it without --parts, delete "
            f"{out}, or choose another --out"
        )
    if (out / common.MANIFEST_NAME).is_file():
        raise FileExistsError(
            f"{out} holds a finished dataset made with other parameters: delete it or choose "
            "another --out (parts never delete each other's files, so there is no --overwrite)"
        )
    shard_parts.claim_header(out, header)
    remove_temp_files(out, shard_names)  # left by a killed run of this part only


def finish_dataset(
    out: Path,
    index: FolderIndex,
    params: dict[str, Any],
    records: list[dict[str, Any]],
    index_rows: list[tuple[str, str, str]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Write ``skipped.txt`` and, last, the manifest from the shard records; drop the work
    folder. ``index_rows``: ``(relpath, reason, detail)`` skipped before any shard was written."""
    rows = [tuple(r) for r in index_rows]
    rows += [tuple(s) for r in sorted(records, key=lambda r: r["index"]) for s in r["skipped"]]
    skipped = Counter(reason for _, reason, _ in rows)
    manifest = build_manifest(index, params, records, skipped, extra)
    if manifest["num_samples"] == 0:
        raise common.DatasetFormatError(
            f"every image of {params['source']} was skipped ({dict(skipped)}); see the reasons "
            "above (no depth maps under --depth-dir? wrong --min-size?)"
        )
    write_skipped(out, rows)  # type: ignore[arg-type]
    common.write_manifest(out, manifest)  # last: from here the folder is a dataset
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    return manifest
