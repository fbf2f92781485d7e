"""A *trained* distillation teacher for the synthetic dataset (``python -m data_prep.synthetic.teacher``).

3DGP's D regresses features of a classifier trained on the real images (ResNet-50 on ImageNet,
spec 6.5). No pretrained weights can be downloaded here, and the embedded dataset's default
teacher is a random network whose features carry no class information, so a "distillation"
ablation on it measures nothing. This module trains a small timm ResNet on the dataset's own
training images (deterministic for a seed), then writes its features (``emb.npy``) into a
*separate copy* of the dataset, leaving the source (which other runs use) untouched:

    python -m data_prep.synthetic.teacher data/cache/synthetic64_n4096_s0 \
        --out data/cache/synthetic64_n4096_s0_teacher-resnet10t-32px-e12

The classifier sees exactly the images ``data_prep.features.teacher.Teacher`` embeds (the timm
eval transform at ``input_size``), so the features come from the network as it was trained. The
last ``holdout`` fraction of the samples is kept out of training to report its accuracy.

Safety: the weights file is saved atomically (temp file, rename) with a JSON report beside it and
reused when present; the copy is written into a hidden staging folder next to ``--out`` (the
feature extractor's resumable out-of-place mode) and renamed into place when complete, so a
second call is a no-op and an interrupted one resumes.
"""

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from PIL import Image

from data_prep import common
from data_prep.extract_features import extract_features, read_shard
from data_prep.features.teacher import RANDOM, Teacher, teacher_identity
from data_prep.images import to_rgb

# One starved CPU core: resnet10t at 32 px (the resolution D sees in experiment=synthetic_fast)
# costs ~11 s of CPU per epoch of 3.7k images (12 epochs: 130 s CPU, held-out accuracy 0.74).
DEFAULT_MODEL, DEFAULT_INPUT_SIZE, DEFAULT_EPOCHS = "resnet10t", 32, 12
DEFAULT_BATCH, DEFAULT_LR, DEFAULT_HOLDOUT = 64, 2e-3, 0.1


@dataclass
class TeacherReport:  # what training produced (saved as JSON beside the weights)
    model: str
    input_size: int
    epochs: int
    seed: int
    feature_dim: int
    num_classes: int
    train_images: int
    heldout_images: int
    heldout_accuracy: float
    train_seconds: float
    train_cpu_seconds: float
    source_manifest_sha256: str


def load_images(folder: str | os.PathLike, model_name: str, input_size: int):
    """All samples of a shard folder, in manifest order, as the teacher's eval transform makes
    them: (images ``[N, 3, S, S]``, labels ``[N]``, the manifest)."""
    folder = Path(folder)
    manifest = common.read_manifest(folder)
    transform = Teacher(model_name, RANDOM, input_size).transform
    images, labels = [], []
    for path in common.shard_paths(folder, manifest):
        for s in read_shard(path):
            key = next((k for k in common.IMAGE_KEYS if k in s), None)
            if key is None or "cls" not in s:
                raise common.DatasetFormatError(
                    f"sample {s['__key__']} of {path} lacks an image or a class label (cls)"
                )
            with Image.open(io.BytesIO(s[key])) as img:
                images.append(transform(to_rgb(img)))
            labels.append(int(s["cls"]))
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64), manifest


def split_holdout(n: int, holdout: float) -> tuple[slice, slice]:
    """(train, held-out) slices: the last ``holdout`` fraction is held out (shards are i.i.d.)."""
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), not {holdout}")
    k = min(n - 1, round(n * holdout))
    return slice(0, n - k), slice(n - k, n)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    model_name: str = DEFAULT_MODEL,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    log: bool = False,
) -> torch.nn.Module:
    """Fit a timm classifier on preprocessed images; deterministic for a seed (and thread count).

    Augmentation: x-flips (every class is mirror-symmetric up to its random yaw) and shifts of up
    to 1/16 of the side. AdamW with a one-cycle schedule, as ``gp3d.eval3d.class_accuracy``;
    BatchNorm statistics recomputed on the un-augmented images at the end.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the init neither reads nor disturbs global RNG
        torch.manual_seed(seed)
        net = timm.create_model(model_name, num_classes=num_classes)
    shift = max(1, images.shape[-1] // 16)
    steps = epochs * ((len(images) + batch_size - 1) // batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for epoch in range(epochs):
        t0, total = time.perf_counter(), 0.0
        for idx in torch.randperm(len(images), generator=gen).split(batch_size):
            x = images[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            dx, dy = torch.randint(-shift, shift + 1, (2,), generator=gen).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(net(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if log:
            print(
                f"teacher epoch {epoch + 1}/{epochs}: loss {total / len(images):.3f} "
                f"({time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    recalibrate_batchnorm(net, images, batch_size)
    return net.eval()


@torch.no_grad()
def recalibrate_batchnorm(net: torch.nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """Set BatchNorm running statistics to the exact averages over ``images`` under the final
    weights: after a short run the momentum averages still mix in early weights, and eval-mode
    predictions (and the features the teacher exports) suffer."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    net.train()
    for x in images.split(batch_size):
        net(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


@torch.no_grad()
def accuracy(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    if len(images) == 0:
        return float("nan")
    pred = torch.cat([net(x).argmax(1) for x in images.split(256)])
    return float((pred == labels).float().mean())


def _save_atomic(path: Path, write) -> None:
    tmp = common.temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def report_path(weights: str | os.PathLike) -> Path:
    return Path(weights).with_suffix(".json")


def ensure_teacher_weights(
    source: str | os.PathLike,
    weights: str | os.PathLike,
    model_name: str = DEFAULT_MODEL,
    input_size: int = DEFAULT_INPUT_SIZE,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    holdout: float = DEFAULT_HOLDOUT,
    batch_size: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
) -> TeacherReport:
    """Train the teacher on ``source``'s training samples and save its state dict to
    ``weights`` (the local-file format ``Teacher`` loads; the classifier ``fc`` is dropped on
    load), with the report as JSON beside it; reuse both when the weights file exists."""
    weights = Path(weights)
    if weights.is_file():
        try:
            return TeacherReport(**json.loads(report_path(weights).read_text()))
        except (OSError, TypeError, json.JSONDecodeError) as err:
            raise FileExistsError(
                f"{weights} exists without a readable report {report_path(weights)} ({err}); "
                "delete the weights file to retrain the teacher"
            ) from err
    images, labels, manifest = load_images(source, model_name, input_size)
    num_classes = int(manifest.get("num_classes") or int(labels.max()) + 1)
    train, held = split_holdout(len(labels), holdout)
    wall, cpu = time.perf_counter(), time.process_time()
    net = train_classifier(
        images[train], labels[train], num_classes, model_name, epochs, batch_size, lr, seed, True
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = TeacherReport(
        model=model_name, input_size=input_size, epochs=epochs, seed=seed,
        feature_dim=int(net.num_features), num_classes=num_classes,
        train_images=len(labels[train]), heldout_images=len(labels[held]),
        heldout_accuracy=accuracy(net, images[held], labels[held]),
        train_seconds=round(wall, 1), train_cpu_seconds=round(cpu, 1),
        source_manifest_sha256=common.manifest_sha256(manifest),
    )  # fmt: skip
    weights.parent.mkdir(parents=True, exist_ok=True)
    _save_atomic(report_path(weights), lambda p: p.write_text(json.dumps(asdict(report), indent=2)))
    _save_atomic(weights, lambda p: torch.save(net.state_dict(), p))  # last: the "done" marker
    return report


def write_teacher_copy(
    source: str | os.PathLike,
    out: str | os.PathLike,
    weights: str | os.PathLike,
    model_name: str = DEFAULT_MODEL,
    input_size: int = DEFAULT_INPUT_SIZE,
) -> bool:
    """Write ``source``'s samples with this teacher's features to ``out``; False if ``out``
    already holds exactly that. Raises ``FileExistsError`` if ``out`` holds something else."""
    source, out = Path(source), Path(out)
    if (out / common.MANIFEST_NAME).is_file() or (out.exists() and any(out.iterdir())):
        _check_copy(source, out, Teacher(model_name, weights, input_size))
        return False
    staging = out.with_name(f".{out.name}.staging")  # fixed name: a re-run resumes its shards
    extract_features(source, staging, model_name=model_name, weights=weights, input_size=input_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.rmdir()  # empty (checked above)
    os.replace(staging, out)
    return True


def _check_copy(source: Path, out: Path, teacher: Teacher) -> None:
    try:
        done = common.read_manifest(out)
        want_sha = common.manifest_sha256(common.read_manifest(source))
        same = (
            teacher_identity(done.get("teacher", {})) == teacher_identity(teacher.record)
            and done["teacher"]["source"]["manifest_sha256"] == want_sha
        )
    except (common.DatasetError, KeyError, TypeError) as err:
        raise FileExistsError(f"{out} exists but is not a finished teacher copy ({err})") from err
    if not same:
        raise FileExistsError(
            f"{out} holds features of another teacher or source (its manifest's 'teacher'); "
            "delete it (and its weights file, to retrain) or choose another output folder"
        )


def build_teacher_dataset(
    source: str | os.PathLike,
    out: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    model_name: str = DEFAULT_MODEL,
    input_size: int = DEFAULT_INPUT_SIZE,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    holdout: float = DEFAULT_HOLDOUT,
) -> tuple[Path, TeacherReport]:
    """Train (or reuse) the teacher of an existing ``source`` dataset and write the copy.
    ``weights`` defaults to ``<out's parent>/teachers/<out's name>-s<seed>.pth`` (name the copy
    after what makes its teacher, as ``conf/ablation/kd_trained.yaml`` does)."""
    out = Path(out)
    if weights is None:
        weights = out.parent / "teachers" / f"{out.name}-s{seed}.pth"
    report = ensure_teacher_weights(source, weights, model_name, input_size, epochs, seed, holdout)
    write_teacher_copy(source, out, weights, model_name, input_size)
    return out, report


def ensure_teacher_dataset(
    path: str | os.PathLike,
    source: str | os.PathLike,
    resolution: int = 64,
    num_samples: int = 4096,
    seed: int = 0,
    teacher: Mapping[str, Any] | None = None,
    teacher_model: str = DEFAULT_MODEL,
    teacher_input_size: int = DEFAULT_INPUT_SIZE,
    teacher_epochs: int = DEFAULT_EPOCHS,
    teacher_seed: int = 0,
) -> Path:
    """The ``data.prepare`` target of ``conf/ablation/kd_trained.yaml``: make sure the synthetic
    ``source`` exists (created exactly as ``conf/data/synthetic.yaml`` does, ``teacher`` being
    *its* feature teacher), train the teacher if its weights are missing, write the copy ``path``.
    Idempotent; one process only."""
    from data_prep.synthetic.dataset import ensure_synthetic_dataset

    ensure_synthetic_dataset(source, num_samples, resolution, seed, teacher=teacher)
    out, _ = build_teacher_dataset(
        source, path, None, teacher_model, teacher_input_size, teacher_epochs, teacher_seed
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.synthetic.teacher",
        description="Train a timm classifier on a synthetic dataset's training images and write "
        "a copy of the dataset with its features (emb.npy) for distillation. Idempotent.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("source", help="existing dataset folder (with manifest.json)")
    parser.add_argument("--out", required=True, help="the copy with teacher features")
    parser.add_argument("--weights", help="weights file (default: <out>/../teachers/...)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="timm model name")
    parser.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE, help="pixels")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT, help="fraction")
    args = parser.parse_args(argv)
    try:
        out, rep = build_teacher_dataset(
            args.source, args.out, args.weights, args.model, args.input_size, args.epochs,
            args.seed, args.holdout,
        )  # fmt: skip
    except (common.DatasetError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"{out}: teacher {rep.model} at {rep.input_size} px, {rep.feature_dim}-d features; "
        f"held-out accuracy {rep.heldout_accuracy:.3f} on {rep.heldout_images} images "
        f"(chance {1 / rep.num_classes:.3f}); trained {rep.epochs} epochs on {rep.train_images} "
        f"images in {rep.train_seconds:.0f} s ({rep.train_cpu_seconds:.0f} s CPU)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
