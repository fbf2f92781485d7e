"""Check a gp3d shard folder against its manifest; exit status 1 with a list of problems.

    python -m data_prep.validate data/imagenet_256            # schema, files, sizes, sha256, counts
    python -m data_prep.validate data/imagenet_256 --full     # + decode every sample

Default checks: the manifest schema (``common.validate_manifest``), class counts, each listed
shard's presence, size and sha256, and its sample count and per-sample keys (tar headers only).
``--full`` also decodes every sample: image at the manifest resolution, 16-bit depth of the same
size, ``cls`` in ``[0, num_classes)``, ``emb.npy`` of ``embedding_dim`` finite values, class
counts equal to the manifest's. Unlisted ``shard-*.tar`` files are reported as warnings (readers
ignore them).
"""

import argparse
import io
import json
import multiprocessing
import sys
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from data_prep import common
from data_prep.shards.parts import unmerged_status

MAX_LISTED = 20  # problems printed per kind before "... and N more"


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    num_samples: int = 0  # samples found in the shards
    class_counts: Counter = field(default_factory=Counter)
    decoded: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_image(data: bytes, manifest: dict[str, Any]) -> str | None:
    res = manifest["resolution"]
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.size != (res, res) or img.mode != "RGB":
            return f"image is {img.mode} {img.size[0]}x{img.size[1]}, not RGB {res}^2"
    return None


def _check_depth(data: bytes, manifest: dict[str, Any]) -> str | None:
    res = manifest["resolution"]
    with Image.open(io.BytesIO(data)) as dep:
        dep.load()
        if dep.size != (res, res):
            return f"depth is {dep.size[0]}x{dep.size[1]}, not {res}^2"
        if not dep.mode.startswith("I;16") and dep.mode != "I":
            return f"depth PNG is mode {dep.mode}, not 16-bit"
    return None


def _check_cls(data: bytes, manifest: dict[str, Any]) -> str | None:
    text = data.decode(errors="replace").strip()
    if not text.isdigit() or int(text) >= max(1, manifest["num_classes"]):
        return f"cls {text!r} is not in [0, {manifest['num_classes']})"
    return None


def _check_embedding(data: bytes, manifest: dict[str, Any]) -> str | None:
    emb = np.load(io.BytesIO(data), allow_pickle=False)
    dim = manifest["embedding_dim"]
    if emb.shape != (dim,) or not np.isfinite(emb).all():
        return f"emb.npy has shape {emb.shape} (want [{dim}]) or non-finite values"
    return None


CHECKS = {"depth.png": _check_depth, "cls": _check_cls, "emb.npy": _check_embedding}
CHECKS.update({k: _check_image for k in common.IMAGE_KEYS})


def _check_sample(sample: dict[str, bytes], manifest: dict[str, Any]) -> list[str]:
    """Problems of one decoded sample (``--full``); each field is checked on its own."""
    problems = []
    for ext, check in CHECKS.items():
        if ext in sample:
            try:
                problem = check(sample[ext], manifest)
            except Exception as err:  # noqa: BLE001 - any decode failure is a reportable problem
                problem = f"{ext} does not decode: {type(err).__name__}: {err}"
            if problem:
                problems.append(problem)
    return problems


def check_shard(args: tuple[Path, dict[str, Any], dict[str, Any], bool]) -> dict[str, Any]:
    """Problems, sample count and labels of one shard (runs in a worker process)."""
    folder, entry, manifest, full = args
    path, problems = folder / entry["name"], []
    out = {"name": entry["name"], "problems": problems, "num_samples": 0, "labels": {}, "keys": []}
    if not path.is_file():
        problems.append("missing")
        return out
    if path.stat().st_size != entry["bytes"]:
        problems.append(f"{path.stat().st_size} bytes, manifest says {entry['bytes']}")
    elif common.file_sha256(path) != entry["sha256"]:
        problems.append("sha256 differs from the manifest (corrupt or replaced)")
    samples: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                if not member.isfile() or not ext:
                    problems.append(f"unexpected tar member {member.name!r}")
                    continue
                sample = samples.setdefault(key, {})
                sample[ext] = tar.extractfile(member).read() if full or ext == "cls" else b""
    except (tarfile.TarError, OSError, EOFError) as err:
        problems.append(f"unreadable tar: {err}")
        return out
    want, labels = set(manifest["keys"]), Counter()
    for key, sample in samples.items():
        if set(sample) != want:
            problems.append(f"sample {key} has keys {sorted(sample)}, manifest says {sorted(want)}")
        if "cls" in sample and sample["cls"].strip().isdigit():
            labels[int(sample["cls"])] += 1
        if full:
            problems += [f"sample {key}: {p}" for p in _check_sample(sample, manifest)]
    if len(samples) != entry["num_samples"]:
        problems.append(f"{len(samples)} samples, manifest says {entry['num_samples']}")
    out.update(num_samples=len(samples), labels=dict(labels), keys=list(samples))
    return out


def validate(folder: str | Path, full: bool = False, workers: int = 0) -> Report:
    """Check ``folder`` (see the module docstring); never raises for a bad dataset."""
    folder, report = Path(folder), Report()
    path = folder / common.MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
        common.validate_manifest(manifest, folder)
    except FileNotFoundError:
        unmerged = unmerged_status(folder)  # a --parts run: say which parts are missing
        report.problems.append(unmerged or f"{path} does not exist: not a finished dataset")
        return report
    except (json.JSONDecodeError, common.DatasetFormatError, KeyError, TypeError) as err:
        report.problems.append(f"manifest: {err}")
        return report
    if sum(manifest["class_counts"]) != manifest["num_samples"]:
        report.problems.append("manifest: class_counts do not add up to num_samples")
    if len(manifest["class_names"]) != manifest["num_classes"]:
        report.problems.append("manifest: class_names and num_classes disagree")
    jobs = [(folder, entry, manifest, full) for entry in manifest["shards"]]
    if workers > 0 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            results = pool.map(check_shard, jobs)
    else:
        results = [check_shard(job) for job in jobs]
    seen: Counter[str] = Counter()
    for res in results:
        report.problems += [f"{res['name']}: {p}" for p in res["problems"]]
        report.num_samples += res["num_samples"]
        report.class_counts.update({int(k): v for k, v in res["labels"].items()})
        seen.update(res["keys"])
    dupes = [k for k, n in seen.items() if n > 1]
    if dupes:
        report.problems.append(f"{len(dupes)} sample keys occur in several shards, e.g. {dupes[0]}")
    if report.num_samples != manifest["num_samples"] and not any(
        "samples, manifest says" in p or "missing" in p for p in report.problems
    ):
        report.problems.append(
            f"{report.num_samples} samples, manifest says {manifest['num_samples']}"
        )
    counts = [report.class_counts.get(i, 0) for i in range(manifest["num_classes"])]
    if "cls" in manifest["keys"] and counts != manifest["class_counts"] and report.ok:
        report.problems.append(f"class counts in the shards {counts} differ from the manifest")
    listed = {e["name"] for e in manifest["shards"]}
    stray = sorted(p.name for p in folder.glob("shard-*.tar") if p.name not in listed)
    if stray:
        report.warnings.append(f"shards not in the manifest (ignored by readers): {stray[:5]}")
    report.decoded = report.num_samples if full else 0
    return report


def _print_list(title: str, items: list[str]) -> None:
    print(title, file=sys.stderr)
    for item in items[:MAX_LISTED]:
        print(f"  - {item}", file=sys.stderr)
    if len(items) > MAX_LISTED:
        print(f"  ... and {len(items) - MAX_LISTED} more", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.validate",
        description="Check a gp3d shard folder against its manifest.json (exit 1 on problems).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("folder", help="shard folder with manifest.json")
    parser.add_argument("--full", action="store_true", help="also decode every sample")
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = this one)")
    args = parser.parse_args(argv)
    report = validate(args.folder, args.full, args.workers)
    if report.warnings:
        _print_list("warnings:", report.warnings)
    if not report.ok:
        _print_list(f"{args.folder}: {len(report.problems)} problem(s):", report.problems)
        return 1
    manifest = json.loads((Path(args.folder) / common.MANIFEST_NAME).read_text())
    skipped = manifest.get("skipped")
    print(
        f"{args.folder}: OK - {report.num_samples} samples in {len(manifest['shards'])} shards, "
        f"{manifest['resolution']} px, {manifest['num_classes']} classes, keys "
        f"{', '.join(manifest['keys'])}"
        + (f"; {report.decoded} samples decoded" if args.full else "; use --full to decode")
        + (f"; skipped at creation: {skipped}" if skipped else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
