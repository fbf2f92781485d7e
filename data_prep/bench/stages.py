"""Images per second of each data-preparation stage on this machine, and ImageNet wall times.

Used by ``python -m data_prep.bench --stages``. Every stage runs in this process on one torch
thread and is timed in CPU seconds of this process (``time.process_time``), so a rate is
images per core-second and stays meaningful on a shared, busy machine; networks have random
weights (speed only):

- decode + resize: ``load_rgb`` of a ~500x375 JPEG + centre crop + Lanczos resize (image and its
  16-bit depth map), what every ``write_shards`` worker does first;
- shard writing: PNG encoding of the resized image and depth + tar member writing (``--png-level``
  default), the rest of a ``write_shards`` worker's work;
- depth: Depth-Anything-V2-Small's architecture at 518 x 686 (its processor's size for a 4:3
  photo) and at 266 x 350 (~256 px inputs, a cheaper setting); LeReS ResNeXt-101 (the
  original's estimator, ``data_prep/depth/leres.py``) at its release's 448 x 448 and at 256 x 256
  (``--input-size 256``);
- teacher: timm ResNet-50 at 224 (``extract_features``).

``--device cuda [--bf16]`` runs the networks on the GPU (batches of 32, wall clock), as
``tools/gpu_check.sh`` does. :func:`imagenet_hours` turns per-device rates into wall times for 1, 8 and 32 devices, assuming
linear scaling (``predict_depth`` / ``predict_features`` split the work without communication).
"""

import hashlib
import io
import tarfile
import time
from pathlib import Path

import torch

from data_prep.images import crop_resize, load_depth, load_rgb
from data_prep.shards.worker import DEFAULT_PNG_LEVEL, encode_image

IMAGENET_TRAIN_IMAGES = 1_281_167


def _per_second(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def decode_and_write_rates(folder: Path, resolution: int) -> tuple[float, float]:
    """(decode + resize, shard writing) images/s of the JPEGs (+ ``_depth.png``) in ``folder``."""
    images = sorted(folder.glob("*.jpg"))
    t0, resized = time.process_time(), []
    for path in images:
        rgb = crop_resize(load_rgb(path), resolution)
        depth = crop_resize(load_depth(path.with_name(f"{path.stem}_depth.png")), resolution)
        resized.append((rgb, depth))
    decode = _per_second(len(images), time.process_time() - t0)
    t0, buf = time.process_time(), io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i, (rgb, depth) in enumerate(resized):
            for ext, data in (("png", encode_image(rgb, "png", DEFAULT_PNG_LEVEL)),
                              ("depth.png", encode_image(depth, "png", DEFAULT_PNG_LEVEL)),
                              ("cls", b"0")):  # fmt: skip
                info = tarfile.TarInfo(f"{i:08d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    hashlib.sha256(buf.getvalue()).hexdigest()  # the shard's checksum, as write_shards
    return decode, _per_second(len(resized), time.process_time() - t0)


def _rate(model: torch.nn.Module, x: torch.Tensor, call, repeats: int, bf16: bool) -> float:
    """Images/s: per CPU-second on the CPU, wall clock (synchronised) on a GPU."""
    cuda = x.device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    with torch.inference_mode(), torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        call(model, x)  # warm-up (allocations, kernel choice)
        if cuda:
            torch.cuda.synchronize()
        t0 = clock()
        for _ in range(repeats):
            call(model, x)
        if cuda:
            torch.cuda.synchronize()
    return _per_second(repeats * x.shape[0], clock() - t0)


def network_rates(
    repeats: int = 2, device: str = "cpu", bf16: bool = False
) -> list[tuple[str, float]]:
    """(stage, images/s) of the depth and teacher networks (random weights): on the CPU one
    thread and small batches; on a GPU batches of 32 (and ``bf16`` autocast if asked)."""
    import timm

    from data_prep.bench.networks import depth_anything_v2_small
    from data_prep.depth.leres import LeReSEstimator

    torch.set_num_threads(1)
    gpu = device != "cpu"
    n1, n2, n3 = (32, 32, 32) if gpu else (1, 2, 4)
    depth = depth_anything_v2_small().to(device)
    run_depth = lambda m, x: m(pixel_values=x)  # noqa: E731
    rows = [
        ("depth: Depth-Anything-V2-Small, 518x686",
         _rate(depth, torch.randn(n1, 3, 518, 686, device=device), run_depth, repeats, bf16)),
        ("depth: Depth-Anything-V2-Small, 266x350",
         _rate(depth, torch.randn(n2, 3, 266, 350, device=device), run_depth, repeats, bf16)),
    ]  # fmt: skip
    del depth
    leres = LeReSEstimator().eval().to(device)
    for side, n in ((448, n1), (256, n2)):
        x = torch.randn(n, 3, side, side, device=device)
        rows.append((f"depth: LeReS ResNeXt-101, {side}x{side}",
                     _rate(leres, x, run_depth, repeats, bf16)))  # fmt: skip
    del leres
    teacher = timm.create_model("resnet50", pretrained=False, num_classes=0).eval().to(device)
    x = torch.randn(n3, 3, 224, 224, device=device)
    rows.append(("teacher: timm resnet50, 224px",
                 _rate(teacher, x, lambda m, x: m(x), repeats, bf16)))  # fmt: skip
    return rows


def imagenet_hours(rate_per_device: float, devices: int) -> float:
    """Wall hours for ImageNet-1k's train split at ``rate_per_device`` images/s per device."""
    return IMAGENET_TRAIN_IMAGES / (rate_per_device * devices) / 3600


def stage_table(
    folder: Path, resolution: int, device: str = "cpu", bf16: bool = False
) -> list[tuple[str, float]]:
    """Every stage's images/s on this machine (see the module docstring)."""
    decode, write = decode_and_write_rates(folder, resolution)
    return [(f"decode + resize to {resolution}px (image + depth)", decode),
            ("shard writing: PNG encode (image + depth) + tar", write),
            *network_rates(device=device, bf16=bf16)]  # fmt: skip


def print_stages(folder: Path, resolution: int, device: str = "cpu", bf16: bool = False) -> None:
    rows = stage_table(folder, resolution, device, bf16)
    where = "1 torch thread, per CPU-second" if device == "cpu" else f"networks on {device}"
    where += ", bf16" if bf16 else ""
    print(f"\n{f'stage ({where})':<52} {'images/s':>10}  ImageNet h: 1 / 8 / 32 devices")
    for name, rate in rows:
        hours = " / ".join(f"{imagenet_hours(rate, n):.1f}" for n in (1, 8, 32))
        print(f"{name:<52} {rate:>10.2f}  {hours}")
    print("Linear scaling assumed (CPU stages: per core; networks: per device). Decode and shard "
          "writing always run on one CPU core here.")  # fmt: skip
