"""Throughput of the real-data pipeline on photographs (no download): one run, printed as a table.

    HF_HUB_OFFLINE=1 .venv/bin/python -m data_prep.bench --images 200 --resolution 256

1. ``write_shards`` in this process (one core): ImageNet-like JPEGs (~500x375, made from
   scikit-image's photos with random crops and colour jitter) with 16-bit depth maps beside them
   -> 256 px shards; images per second per core and bytes per sample. Optionally the same with a
   pool of ``--pool-workers`` processes (scaling).
2. Loader: images per second through the data module's pipeline (``gp3d.data.shards``, 0
   workers) vs a plain ``torch.utils.data.Dataset`` over the same 256 px samples stored as PNG
   files (image + depth, decoded with the same per-sample decoders), and over the source JPEGs
   cropped/resized on the fly; ``--repeats`` interleaved passes each, the best reported.
3. An estimate of the wall time of ``write_shards`` for ImageNet (1,281,167 images) on 32 cores,
   assuming linear scaling (depth estimation and teacher features run on a GPU: not included).
4. ``--networks``: CPU seconds per image of the depth, teacher and selection networks at their
   real sizes (``data_prep/bench/networks.py``) and a CPU-only estimate of the whole chain.

``--stages`` prints only images/s per stage (decode + resize, shard writing, depth, teacher) and
ImageNet wall times from them (``data_prep/bench/stages.py``).

Files live in a temporary folder (page cache warm for every loader: the ratio measures decoding
and file-handling overhead, not disk speed).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance
from skimage import data as skdata
from torch.utils.data import DataLoader, Dataset

from data_prep import common
from data_prep.images import crop_resize, load_depth, load_rgb
from data_prep.write_shards import write_shards
from gp3d.data.shards import decode_depth, decode_image, make_pipeline

IMAGENET_TRAIN_IMAGES = 1_281_167
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")


def make_photo_folder(folder: Path, num_images: int, seed: int = 0) -> None:
    """``num_images`` JPEGs of ~500x375 (either orientation) with ``<stem>_depth.png`` beside."""
    rng = np.random.default_rng(seed)
    photos = [getattr(skdata, name)() for name in PHOTOS]
    left, _, _ = skdata.stereo_motorcycle()
    photos.append(left)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        src = photos[i % len(photos)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
        top, left_ = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        img = Image.fromarray(src[top : top + ch, left_ : left_ + cw])
        size = (500, 375) if rng.random() < 0.7 else (375, 500)
        img = img.resize(size, Image.Resampling.BICUBIC)
        img = ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
        img.save(folder / f"img_{i:05d}.jpg", quality=90)
        rows = np.linspace(2.0, 1.0, size[1])[:, None]
        depth = rows + 0.3 * np.asarray(img.convert("L"), np.float64) / 255.0
        (folder / f"img_{i:05d}_depth.png").write_bytes(common.encode_relative_depth(depth))


class FileDataset(Dataset):
    """The plain baseline: one PNG image + one 16-bit depth PNG per sample, decoded with PIL."""

    def __init__(self, folder: Path) -> None:
        self.images = sorted(p for p in folder.glob("*.png") if not p.name.endswith("_depth.png"))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.images[i]
        depth = path.with_name(path.stem + "_depth.png")
        return decode_image(path.read_bytes()), decode_depth(depth.read_bytes())


class SourceDataset(Dataset):
    """A naive loader: the source JPEG + depth, centre-cropped and resized at every read."""

    def __init__(self, folder: Path, resolution: int) -> None:
        self.images = sorted(folder.glob("*.jpg"))
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.images[i]
        rgb = crop_resize(load_rgb(path), self.resolution)
        # load_depth: every 16-bit PNG layout at full precision (Pillow drops the low byte of
        # 16-bit RGB / grey+alpha), the same reader write_shards uses
        d = crop_resize(load_depth(path.with_name(path.stem + "_depth.png")), self.resolution)
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1
        return image, torch.from_numpy(d.astype(np.float32))[None] / 65536 * 2 - 1


def _rate(loader: DataLoader, images_per_batch: int) -> float:
    t0, n = time.perf_counter(), 0
    for _ in loader:
        n += images_per_batch
    return n / (time.perf_counter() - t0)


def export_samples(shards: Path, folder: Path) -> None:
    """The shards' samples as files (``<key>.png`` + ``<key>_depth.png``) for the baseline."""
    from data_prep.extract_features import read_shard

    folder.mkdir()
    manifest = common.read_manifest(shards)
    for path in common.shard_paths(shards, manifest):
        for s in read_shard(path):
            (folder / f"{s['__key__']}.png").write_bytes(s["png"])
            (folder / f"{s['__key__']}_depth.png").write_bytes(s["depth.png"])


def run(
    num_images: int, resolution: int, batch: int, pool_workers: int, root: Path, networks: bool,
    repeats: int = 3,
) -> None:  # fmt: skip
    torch.set_num_threads(1)
    src, shards = root / "src", root / "shards"
    t0 = time.perf_counter()
    make_photo_folder(src, num_images)
    print(f"made {num_images} source JPEGs + depth in {time.perf_counter() - t0:.1f} s")
    shard_size = max(1, num_images // 4)
    res = write_shards(src, shards, resolution=resolution, shard_size=shard_size, workers=0)
    per_core = res.images_per_second
    manifest = common.read_manifest(shards)
    bytes_per_sample = sum(s["bytes"] for s in manifest["shards"]) / manifest["num_samples"]
    rows = [("write_shards, 1 core (in-process)", per_core, "images/s/core")]
    if pool_workers > 0:  # a fresh interpreter: spawned workers re-import __main__ (torch here)
        cmd = [sys.executable, "-m", "data_prep.write_shards", str(src), "--out",
               str(root / "pooled"), "--resolution", str(resolution), "--quiet", "--shard-size",
               str(max(1, num_images // (4 * pool_workers))), "--workers", str(pool_workers)]  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        pooled = res.images_processed / (time.perf_counter() - t0)
        rows.append((f"write_shards CLI, {pool_workers} processes (incl. startup)", pooled,
                     "images/s"))  # fmt: skip

    files = root / "files"
    export_samples(shards, files)
    nb = num_images // batch
    pipe = make_pipeline(
        common.shard_paths(shards, manifest),
        resolution=resolution,
        per_device_batch=batch,
        num_batches=nb,
        shuffle_buffer=min(500, num_images),
        xflip=False,  # like for like: the baselines do not flip
    )
    loaders = {
        "shards": DataLoader(pipe, batch_size=None, num_workers=0),
        "files": DataLoader(FileDataset(files), batch, shuffle=True, num_workers=0,
                            drop_last=True),
        "source": DataLoader(SourceDataset(src, resolution), batch, shuffle=True, num_workers=0,
                             drop_last=True),
    }  # fmt: skip
    # passes interleaved and the best kept: no loader pays the warm-up or a busy moment alone
    passes = {name: [] for name in loaders}
    for _ in range(repeats):
        for name, loader in loaders.items():
            passes[name].append(_rate(loader, batch))
    shard_rate, file_rate, src_rate = (max(passes[k]) for k in ("shards", "files", "source"))
    print("loader passes (images/s): " + "; ".join(
        f"{k} " + " ".join(f"{r:.0f}" for r in v) for k, v in passes.items()))  # fmt: skip
    rows += [
        (f"loader: shards (gp3d.data.shards), best of {repeats}", shard_rate, "images/s"),
        (f"loader: same samples as PNG files, best of {repeats}", file_rate, "images/s"),
        (f"loader: source JPEGs crop+resize, best of {repeats}", src_rate, "images/s"),
        ("ratio shards / PNG files", shard_rate / file_rate, "x"),
        ("ratio shards / source JPEGs", shard_rate / src_rate, "x"),
    ]
    print(f"\n{'measurement':<52} {'value':>10}  unit")
    for name, value, unit in rows:
        print(f"{name:<52} {value:>10.2f}  {unit}")
    hours = IMAGENET_TRAIN_IMAGES / (per_core * 32) / 3600
    print(
        f"\nshard size: {bytes_per_sample / 1e3:.0f} kB per {resolution}px sample "
        f"(~{bytes_per_sample * 1000 / 1e6:.0f} MB per 1000-image shard); ImageNet: "
        f"~{bytes_per_sample * IMAGENET_TRAIN_IMAGES / 1e9:.0f} GB"
        f"\nImageNet write_shards on 32 cores at {per_core:.1f} images/s/core (linear scaling, "
        f"decode + crop/resize + PNG encode of image and depth + tar + sha256): ~{hours:.1f} h "
        "wall time; depth estimation and teacher features (GPU) and instance selection are "
        "separate steps. CPU: "
        f"{os.cpu_count()} cores visible, torch threads 1; shared machines give noisy figures."
    )
    if networks:
        _print_network_costs(per_core)


def _print_network_costs(write_per_core: float) -> None:
    from data_prep.bench.networks import network_costs

    rows = network_costs()
    print(f"\n{'network (random weights, 1 thread)':<52} {'value':>10}  unit")
    for name, sec in rows:
        print(f"{name:<52} {sec:>10.3f}  s/image")
    total = sum(sec for _, sec in rows) + 1.0 / write_per_core
    hours = IMAGENET_TRAIN_IMAGES * total / 32 / 3600
    print(
        f"CPU-only ImageNet estimate on 32 cores (selection + depth + write_shards + teacher, "
        f"linear scaling, {total:.2f} core-s/image): ~{hours:.1f} h. With a GPU the networks "
        "move off the CPU (not measured here)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--images", type=int, default=200, help="source images to generate")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32, help="loader batch size")
    parser.add_argument("--pool-workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="also time write_shards with this many processes (0: skip)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved passes per loader (the best is reported)")  # fmt: skip
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed after)")
    parser.add_argument("--networks", action="store_true",
                        help="also time the depth / teacher / selection networks on the CPU")  # fmt: skip
    parser.add_argument("--stages", action="store_true", help="only the per-stage images/s "
                        "(decode + resize, depth, teacher, shard writing) and ImageNet hours")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="--stages: where the networks run")
    parser.add_argument("--bf16", action="store_true", help="--stages: bf16 autocast networks")
    args = parser.parse_args(argv)
    if args.stages:
        from data_prep.bench.stages import print_stages

        with tempfile.TemporaryDirectory(prefix="gp3d-bench-") as tmp:
            make_photo_folder(Path(tmp), args.images)
            print_stages(Path(tmp), args.resolution, args.device, args.bf16)
        return 0
    if args.dir:
        run(args.images, args.resolution, args.batch, args.pool_workers, Path(args.dir),
            args.networks, args.repeats)  # fmt: skip
    else:
        with tempfile.TemporaryDirectory(prefix="gp3d-bench-") as tmp:
            run(args.images, args.resolution, args.batch, args.pool_workers, Path(tmp),
                args.networks, args.repeats)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
