"""Write the one manifest of a ``write_shards --parts N`` run once every part has finished.

    python -m data_prep.merge_parts data/imagenet_256           # sizes checked
    python -m data_prep.merge_parts data/imagenet_256 --verify  # + sha256 of every shard

Checks, each a clear error that names the part or shard: every part 0 .. N-1 has finished
(``part-IIIII-of-NNNNN.json`` in the work folder), each with the header's ``--parts`` and settings
(``data_prep/shards/parts.py``); together they hold every shard index exactly once; every shard
file a part recorded exists with its recorded size (and sha256 with ``--verify``). Then it writes
``skipped.txt`` and the manifest exactly as a single-machine run would (plus ``parts``), and
drops the work folder. Merging a merged folder is a no-op.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

from data_prep import common
from data_prep.folder_source import FolderIndex
from data_prep.shards import parts as shard_parts
from data_prep.shards.output import finish_dataset


class PartsIncompleteError(common.DatasetError):
    """Some part has not finished (or its output is missing or inconsistent)."""


def _check_part(out: Path, header: dict[str, Any], done: dict[str, Any], i: int) -> list[str]:
    """Problems of part ``i``'s record against the header and the files on disk."""
    n, where = header["parts"], shard_parts.done_path(out, i, header["parts"]).name
    same = {k: v for k, v in done.items() if k not in ("part", "records")}
    if same != header or done.get("part") != i:
        return [f"part {i} ({where}) was written with other settings than {out} holds"]
    want = list(shard_parts.part_shards(header["num_shards"], n, i))
    got = sorted(r["index"] for r in done["records"])
    if got != want:
        return [f"part {i} ({where}) lists shards {got[:5]}..., expected {want[:5]}..."]
    problems = []
    for r in done["records"]:
        if r["name"] is None:
            continue
        path = out / r["name"]
        if not path.is_file() or path.stat().st_size != r["bytes"]:
            problems.append(
                f"part {i}: shard {path} is missing or has another size: re-run part {i}"
            )
    return problems


def merge_parts(out: str | Path, verify: bool = False) -> dict[str, Any]:
    """Merge the parts in ``out`` and return the manifest (see the module docstring)."""
    out = Path(out)
    header = shard_parts.read_header(out)
    if header is None:
        if (out / common.MANIFEST_NAME).is_file():
            return common.read_manifest(out, verify_checksums=verify)  # merged already
        raise common.DatasetNotFoundError(
            f"{out} holds no `write_shards --parts` run ({shard_parts.header_path(out)} is "
            "missing): run `python -m data_prep.write_shards SRC --out "
            f"{out} --parts N --part I` for I = 0 .. N-1 first"
        )
    n = header["parts"]
    missing = shard_parts.missing_parts(out, n)
    if missing:
        names = ", ".join(
            f"part {i} ({shard_parts.done_path(out, i, n).name})" for i in missing[:10]
        )
        raise PartsIncompleteError(
            f"{out}: {len(missing)} of {n} parts have not finished: {names}"
            + (" ..." if len(missing) > 10 else "")
            + f". Run (or resume) `write_shards ... --parts {n} --part I` for each, then merge again."
        )
    stray = sorted(p.name for p in shard_parts.header_path(out).parent.glob("part-*-of-*.json")
                   if not p.name.endswith(f"-of-{n:05d}.json"))  # fmt: skip
    if stray:
        raise PartsIncompleteError(
            f"{out} holds records of a run with another --parts ({', '.join(stray[:3])}): delete "
            "the folder and run the parts again with one --parts"
        )
    records, problems = [], []
    for i in range(n):
        done = shard_parts.read_done(out, n, i)
        assert done is not None  # checked by missing_parts
        problems += _check_part(out, header, done, i)
        records += done["records"]
    if verify and not problems:
        problems += [
            f"shard {r['name']} does not match its sha256: re-run the part that wrote it"
            for r in records
            if r["name"] is not None and common.file_sha256(out / r["name"]) != r["sha256"]
        ]
    if problems:
        raise PartsIncompleteError(f"{out}: cannot merge:\n  " + "\n  ".join(problems[:20]))
    params = header["params"]
    index = FolderIndex(Path(params["source"]), [], header["class_names"], header["class_folders"])
    rows = [tuple(r) for r in header["index_skipped"]]
    extra = {**header["extra"], "parts": {"count": n, "merged_by": "data_prep.merge_parts"}}
    return finish_dataset(out, index, params, records, rows, extra)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.merge_parts",
        description="Check that every part of a `write_shards --parts N` run has finished and "
        "write the dataset's manifest.",
    )
    parser.add_argument("dest", help="the --out folder every part wrote into")
    parser.add_argument("--verify", action="store_true", help="also check every shard's sha256")
    args = parser.parse_args(argv)
    try:
        manifest = merge_parts(args.dest, args.verify)
    except common.DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"{args.dest}: merged - {manifest['num_samples']} images in {len(manifest['shards'])} "
        f"shards; skipped {manifest['skipped'] or 'none'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
