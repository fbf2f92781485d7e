"""Evaluate a generator: ``python -m gp3d.evaluate CHECKPOINT --metrics fid50k_full,kid50k_full,...``

Metrics (spec 8.1 / 8.2, the original's names):

    fid<N>[k][_full]     Fréchet distance of N fakes vs the reals (_full: all reals, else N)
    kid<N>[k][_full]     kernel inception distance (100 subsets of <= 1000)
    is<N>[k]             Inception Score, 10 splits (needs a network with logits)
    pr<N>[k]<K>[_full]   improved precision / recall, K nearest neighbours (_full: <= 200k reals)
    nfs<N>               Non-Flatness Score (gp3d.callbacks.nfs.compute_nfs)

Fakes follow spec 8.1 (G_ema, full render, prior cameras through the camera generator, labels of
random dataset items, uint8 conversion); ``--truncation`` and ``--class`` change that on purpose
(psi < 1 truncates toward the class-wise mean w of a conditional G, as generate does).
Fakes are rendered once per feature network, for the largest N asked, and shared (a metric with
a smaller N uses the first N). Real statistics are cached (``gp3d.metrics.real_stats``).

Writes a JSON report (atomically) and prints a table. Under ``torchrun`` the fakes and real
images are split over the processes; rank 0 writes the report.
"""

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import gp3d
from gp3d.callbacks.nfs import compute_nfs
from gp3d.data.format import manifest_sha256, read_manifest
from gp3d.inference.portable import load_generator
from gp3d.metrics.distributed import rank_and_world
from gp3d.metrics.fakes import fake_features
from gp3d.metrics.feature_net import load_feature_network
from gp3d.metrics.fid import (
    FeatureStats,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)
from gp3d.metrics.precision_recall import precision_recall
from gp3d.metrics.real_stats import real_stats
from gp3d.utils.env import pick_device

KID_MAX_REAL = 1_000_000  # the original's kid50k_full
PR_MAX_REAL = 200_000  # the original's pr50k3_full
_METRIC = re.compile(r"^(fid|kid|is|pr|nfs)(\d+)(k?)(\d*)(_full)?$")


class MetricError(ValueError):
    """A metric name gp3d.evaluate does not know."""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # fid | kid | is | pr | nfs
    num: int  # fakes
    full: bool  # compare against all reals (capped for kid / pr as the original)
    k: int = 3  # nearest neighbours (pr)


def parse_metric(name: str, num_override: int | None = None) -> MetricSpec:
    m = _METRIC.match(name)
    if (
        m is None
        or (m.group(4) and m.group(1) != "pr")
        or (m.group(5) and m.group(1) in ("is", "nfs"))
    ):
        raise MetricError(
            f"unknown metric {name!r}: use fid<N>[k][_full], kid<N>[k][_full], is<N>[k], "
            "pr<N>[k]<K>[_full] or nfs<N>, e.g. fid50k_full, kid50k_full, is50k, pr50k3_full, "
            "nfs256"
        )
    kind, num = m.group(1), int(m.group(2)) * (1000 if m.group(3) else 1)
    k = int(m.group(4)) if m.group(4) else 3
    return MetricSpec(name, kind, num_override or num, bool(m.group(5)), k)


def _real_budget(spec: MetricSpec, total: int) -> tuple[int | None, int]:
    """(max real images, real features to keep) for a metric."""
    if spec.kind == "fid":
        return (None if spec.full else spec.num), 0
    cap = KID_MAX_REAL if spec.kind == "kid" else PR_MAX_REAL
    n = min(total, cap if spec.full else spec.num)
    return (None if n >= total else n), n


def _resolve_class(value: str | None, class_names: list[str]) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        idx = int(value)
    elif value in class_names:
        idx = class_names.index(value)
    else:
        raise ValueError(f"--class {value!r}: not an index or one of {class_names[:10]}...")
    if not 0 <= idx < max(len(class_names), 1):
        raise ValueError(f"--class {idx} out of range: the dataset has {len(class_names)} classes")
    return idx


class _Fakes:
    """Feature networks and fake features, each computed once: a network's fakes are rendered
    for the largest N any metric asks of it (and with logits when IS is asked)."""

    def __init__(self, G, device: str, batch_size: int, counts, class_index, psi: float, seed: int):
        self.G, self.device, self.batch_size = G, device, batch_size
        self.counts, self.class_index, self.psi, self.seed = counts, class_index, psi, seed
        self.nets: dict = {}
        self.cache: dict = {}  # net spec -> (n, features, seconds)

    def net(self, spec_str: str):
        if spec_str not in self.nets:
            self.nets[spec_str] = load_feature_network(spec_str, device=self.device)
        return self.nets[spec_str]

    def features(self, spec_str: str, n: int, logits: bool):
        have = self.cache.get(spec_str)
        if have is None or have[0] < n or (logits and have[1].logits is None):
            start = time.perf_counter()
            f = fake_features(
                self.G, self.net(spec_str), n, self.batch_size, self.counts, self.class_index,
                self.psi, self.seed, with_logits=logits,
            )  # fmt: skip
            self.cache[spec_str] = (n, f, time.perf_counter() - start)
        return self.cache[spec_str][1]

    def seconds(self) -> dict[str, float]:
        return {k: v[2] for k, v in self.cache.items()}


def _report_header(checkpoint, loaded, data, manifest, psi, class_index, seed, device) -> dict:
    """What was evaluated: checkpoint, data (and whether G was trained on it), settings."""
    sha = manifest_sha256(manifest)
    trained_on = loaded.meta.get("data", {}).get("manifest_sha256")
    return {
        "checkpoint": str(checkpoint),
        "kimg": loaded.meta.get("kimg"),
        "data": {
            "path": str(Path(data).resolve()),
            "manifest_sha256": sha,
            "num_images": int(manifest["num_samples"]),
            "resolution": int(manifest["resolution"]),
            "same_as_training": None if trained_on is None else trained_on == sha,
        },
        "generator_resolution": loaded.G.img_resolution,
        "truncation_psi": psi,
        "class_index": class_index,
        "seed": seed,
        "device": str(device),
        "world_size": rank_and_world()[1],
        "gp3d_version": gp3d.__version__,
        "metrics": {},
    }


def _inception_score_entry(fakes: _Fakes, net_spec: str, spec: MetricSpec) -> dict:
    net = fakes.net(net_spec)
    if not net.has_logits:
        return {
            "feature_net": net.name,
            "skipped": f"{net.name} has no classifier logits; Inception Score needs "
            "--feature-net inception (torch-fidelity weights)",
        }
    logits = fakes.features(net_spec, spec.num, True).logits[: spec.num]
    value, std = inception_score(logits, num_splits=10)
    return {"feature_net": net.name, "value": value, "std": std}


def _distance_entry(fakes: _Fakes, net_spec: str, spec: MetricSpec, reals_of) -> dict:
    """FID, KID or precision/recall of the fakes against the (cached) real statistics."""
    net = fakes.net(net_spec)
    fake = fakes.features(net_spec, spec.num, False).features[: spec.num]
    reals = reals_of(spec, net)
    entry: dict = {"feature_net": net.name, "num_reals": reals.n}
    if spec.kind == "fid":
        s = FeatureStats.of(fake)
        entry["value"] = frechet_distance(s.mean, s.cov, reals.mean, reals.cov)
    elif spec.kind == "kid":
        entry["value"] = kernel_inception_distance(reals.features, fake)
        entry["num_reals"] = int(reals.features.shape[0])
    else:
        p, r = precision_recall(reals.features, fake, k=spec.k)
        entry.update(value=p, precision=p, recall=r, k=spec.k)
        entry["num_reals"] = int(reals.features.shape[0])
    return entry


def evaluate(
    checkpoint: str,
    metrics: list[str],
    data: str | None = None,
    feature_net: str = "inception",
    pr_feature_net: str | None = None,
    truncation_psi: float = 1.0,
    class_name: str | None = None,
    num_samples: int | None = None,
    batch_size: int = 4,
    real_batch_size: int = 64,
    num_workers: int = 0,
    cache_dir: str | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Compute ``metrics`` for the generator in ``checkpoint``; returns the report dict."""
    specs = [parse_metric(m, num_samples) for m in metrics]
    loaded = load_generator(checkpoint, device=device)
    data = data or loaded.meta.get("data", {}).get("path")
    if not data:
        raise ValueError(f"{checkpoint} records no dataset path: pass --data <dataset folder>")
    manifest = read_manifest(data)
    class_index = _resolve_class(class_name, list(manifest.get("class_names") or []))
    cache_dir = cache_dir or str(Path(data).resolve().parent / "fid_stats")
    report = _report_header(
        checkpoint, loaded, data, manifest, truncation_psi, class_index, seed, device
    )
    fakes = _Fakes(
        loaded.G,
        device,
        batch_size,
        manifest.get("class_counts"),
        class_index,
        truncation_psi,
        seed,
    )

    def net_of(spec: MetricSpec) -> str:
        return (pr_feature_net or feature_net) if spec.kind == "pr" else feature_net

    def reals_of(spec: MetricSpec, net):
        max_items, keep = _real_budget(spec, int(manifest["num_samples"]))
        return real_stats(
            data, net, cache_dir, real_batch_size, num_workers, max_items, class_index, keep,
            device, manifest,
        )  # fmt: skip

    # render each network's fakes once, for the largest N (and with logits if IS is asked)
    for net_spec in dict.fromkeys(net_of(s) for s in specs if s.kind != "nfs"):
        users = [s for s in specs if s.kind != "nfs" and net_of(s) == net_spec]
        want_logits = any(s.kind == "is" for s in users) and fakes.net(net_spec).has_logits
        fakes.features(net_spec, max(s.num for s in users), want_logits)

    for spec in specs:
        start = time.perf_counter()
        if spec.kind == "nfs":
            entry = {"value": compute_nfs(loaded.G, spec.num, batch_size=batch_size, seed=seed)}
            if class_index is not None or truncation_psi != 1.0:
                entry["note"] = "NFS keeps its own protocol (spec 8.2): random labels, psi = 1"
        elif spec.kind == "is":
            entry = _inception_score_entry(fakes, net_of(spec), spec)
        else:
            entry = _distance_entry(fakes, net_of(spec), spec, reals_of)
        report["metrics"][spec.name] = {"num_fakes": spec.num, **entry}
        report["metrics"][spec.name]["seconds"] = time.perf_counter() - start
    report["fake_render_seconds"] = fakes.seconds()
    return report


def format_table(report: dict) -> str:
    rows = [("metric", "value", "fakes", "reals", "network")]
    for name, e in report["metrics"].items():
        if "skipped" in e:
            value = "skipped"
        elif "recall" in e:
            value = f"P={e['precision']:.4f} R={e['recall']:.4f}"
        elif "std" in e:
            value = f"{e['value']:.4f} +- {e['std']:.4f}"
        else:
            value = f"{e['value']:.4f}"
        rows.append(
            (
                name,
                value,
                str(e["num_fakes"]),
                str(e.get("num_reals", "")),
                e.get("feature_net", ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for e in report["metrics"].values():
        if "skipped" in e:
            lines.append(f"note: {e['skipped']}")
    return "\n".join(lines)


def write_report(report: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _init_distributed(device: str) -> str:
    """torchrun sets WORLD_SIZE / LOCAL_RANK: join the process group, one device per rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m gp3d.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("checkpoint", help="training checkpoint (.ckpt) or gp3d.export file")
    ap.add_argument("--metrics", default="fid50k_full", help="comma-separated metric names")
    ap.add_argument("--data", default=None, help="dataset folder (default: the checkpoint's)")
    ap.add_argument(
        "--feature-net",
        default="inception",
        help="inception | inception:<weights.pth> | fid-helper | <file.pt> | random[:dim] (tests)",
    )
    ap.add_argument(
        "--pr-feature-net",
        default=None,
        help="network for precision/recall (the original: VGG16 fc2, e.g. a TorchScript .pt); "
        "default: --feature-net",
    )
    ap.add_argument(
        "--truncation",
        type=float,
        default=1.0,
        help="psi (spec 8.1 uses 1.0); toward the class-wise mean w when G is conditional",
    )
    ap.add_argument(
        "--class", dest="class_name", default=None, help="only this class (index or name)"
    )
    ap.add_argument("--num-samples", type=int, default=None, help="override every metric's N")
    ap.add_argument("--batch-size", type=int, default=4, help="fakes per forward (original: 4)")
    ap.add_argument("--real-batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for reals")
    ap.add_argument(
        "--cache-dir", default=None, help="real statistics cache (default: <data>/../fid_stats)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--out", default=None, help="JSON report (default: next to the checkpoint)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = _init_distributed(str(pick_device(args.device)))
    try:
        report = evaluate(
            args.checkpoint,
            [m.strip() for m in args.metrics.split(",") if m.strip()],
            data=args.data,
            feature_net=args.feature_net,
            pr_feature_net=args.pr_feature_net,
            truncation_psi=args.truncation,
            class_name=args.class_name,
            num_samples=args.num_samples,
            batch_size=args.batch_size,
            real_batch_size=args.real_batch_size,
            num_workers=args.num_workers,
            cache_dir=args.cache_dir,
            seed=args.seed,
            device=device,
        )
    except (MetricError, ValueError, FileNotFoundError, RuntimeError, ModuleNotFoundError) as err:
        print(f"gp3d.evaluate: error: {err}", file=sys.stderr)
        return 2
    if rank_and_world()[0] == 0:
        ckpt = Path(args.checkpoint)
        out = args.out or ckpt.with_name(f"metrics-{ckpt.stem}.json")
        print(format_table(report))
        print(f"report: {write_report(report, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
