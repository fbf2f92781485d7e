"""Speed benchmark: seconds per training iteration (G + D + amortised R1) of several experiments,
measured in one process on the same in-memory batch, reported as ratios to a baseline; per phase
(G, D, R1) times after warm-up, images/s, peak memory (CUDA allocator, else process RSS), FLOPs
per image (torch.utils.flop_counter, one counted iteration outside the timed ones) and MFU
against the device's peak (``--peak-tflops``, or a table of known GPUs).

    python -m gp3d.bench                                   # synthetic sizes, 3dgp vs epigraf
    python -m gp3d.bench --experiments epigraf 3dgp no_kd --steps 20 --size synthetic
    python -m gp3d.bench --size full --device cuda         # the original's sizes (GPU)
    python -m gp3d.bench --experiments 3dgp 3dgp,model.module.compile=true --warmup 3
    python -m gp3d.bench --experiments 3dgp_imagenet 3dgp_imagenet,trainer.precision=bf16-mixed \
        --size full --device cuda --batch-size 32 --json bench.json
    python -m gp3d.bench --experiments smoke smoke,trainer=ddp_sim --size full --batch-size 8

An entry whose trainer config has ``devices`` > 1 and a strategy (``trainer=ddp_sim``, ``fsdp``)
runs data-parallel: Lightning launches the other ranks (re-running this command, which then
runs only the distributed entries), each rank takes ``batch_size / devices`` images, and the
images/s and FLOPs are the global batch's, so the ratio to a 1-process entry is the cost of
data parallelism per image at the same global batch.
At most one data-parallel entry per command, after the 1-process ones: Lightning launches the
other ranks at its fit and they run only the entries that name a trainer.

Absolute times only hold on the machine they were measured on; compare ratios. On a shared
CPU, compare the CPU seconds per image (all ranks' process CPU time): wall time there mostly
measures the other processes' load, and a 2-rank entry gets twice the scheduler share.
"""

import argparse
import json
import os
import resource
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning import Callback, Trainer
from omegaconf import open_dict
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from gp3d.types import Batch
from gp3d.utils.env import configure_tf32

CONF = str(Path(__file__).resolve().parents[2] / "conf")
SIZES = ("synthetic", "full")  # synthetic = the `make train` sizes; full = the experiment's own
SYNTHETIC_SIZES = [
    "model.z_dim=64",
    "model.w_dim=64",
    "model.patch_resolution=32",
    "model.synthesis.plane_resolution=64",
    "model.synthesis.plane_channels=16",
    "model.synthesis.channel_base=2048",
    "model.synthesis.channel_max=64",
    "model.decoder.hidden_dim=32",
    "model.renderer.num_coarse=12",
    "model.renderer.num_fine=12",
    "model.discriminator.channel_base=2048",
    "model.discriminator.channel_max=128",
    "data.resolution=64",
]


class _Fixed(Dataset):
    def __init__(self, batch: Batch, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Batch:
        return self.batch


class _Timer(Callback):
    """Wall time per timed iteration, and CPU time (this process's, summed over the ranks of a
    data-parallel entry): on a shared machine the CPU time of the work is the cost that other
    processes' load does not change, and it counts every rank's share."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self.cpu_times = warmup, [], []
        self._t = self._c = 0.0
        self.cpu_s_per_iter = 0.0

    def on_train_batch_start(self, trainer, *args) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._t, self._c = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._t)
            self.cpu_times.append(time.process_time() - self._c)

    def on_train_end(self, trainer, pl_module) -> None:
        mean = torch.tensor(sum(self.cpu_times) / max(len(self.cpu_times), 1))
        self.cpu_s_per_iter = float(trainer.strategy.reduce(mean, reduce_op="sum"))


PHASES = ("_g_step", "_d_step", "_r1_step")
# Dense peak TFLOP/s by (device name fragment, dtype): vendor datasheets (SXM, no sparsity).
PEAK_TFLOPS = {
    ("H100", "bf16"): 989.0, ("H100", "fp32"): 494.7,  # fp32 = TF32 tensor cores
    ("H200", "bf16"): 989.0, ("H200", "fp32"): 494.7,
    ("A100", "bf16"): 312.0, ("A100", "fp32"): 156.0,
}  # fmt: skip


class _PhaseClock:
    """Wraps the LightningModule's phase methods on one instance: wall time per call after the
    warm-up iterations, and FLOPs of the calls made while ``count_flops`` is on."""

    def __init__(self, model, warmup: int) -> None:
        self.times: dict[str, list[float]] = {p: [] for p in PHASES}
        self.flops: dict[str, int] = dict.fromkeys(PHASES, 0)
        self.count_flops, self.warmup, self.model = False, warmup, model
        for name in PHASES:
            setattr(model, name, self._wrap(name, getattr(model, name)))

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            counter = FlopCounterMode(display=False) if self.count_flops else nullcontext()
            _sync()
            start = time.perf_counter()
            with counter:
                out = fn(*args, **kwargs)
            _sync()
            if self.count_flops:
                self.flops[name] += counter.get_total_flops()
            elif self.model._host_iteration >= self.warmup:  # this iteration is a timed one
                self.times[name].append(time.perf_counter() - start)
            return out

        return timed


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory_mib(device: str) -> float:
    """Peak CUDA allocator memory, or the process's peak RSS on CPU (Linux KiB units)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_tflops(device: str, precision: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    kind = "bf16" if "bf16" in precision or "16" in precision else "fp32"
    return next((v for (frag, k), v in PEAK_TFLOPS.items() if frag in name and k == kind), None)


def build(exp: str, size: str, batch_size: int, num_classes: int, extra: list[str] | None = None):
    cfg = bench_config(exp, size, batch_size, num_classes, extra)
    return instantiate(cfg.model.module, _convert_="all"), cfg


def bench_config(
    exp: str, size: str, batch_size: int, num_classes: int, extra: list[str] | None = None
):
    """The composed training config of one entry, with the bench's sizes and class count."""
    overrides = [f"experiment={exp}"] + (SYNTHETIC_SIZES if size == "synthetic" else [])
    overrides += list(extra or [])  # e.g. data.resolution=256 (gp3d.bench.fid)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=overrides + [f"data.batch_size={batch_size}"])
    configure_tf32(cfg.get("tf32", True))  # as gp3d.train does
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp/gp3d_bench"
        cfg.model.c_dim = num_classes
        cfg.model.total_kimg = 1e9  # never stop inside the timed steps (smoke trains 16 images)
        if cfg.model.kd_dim == "auto":  # ResNet-50 features when the experiment distils
            cfg.model.kd_dim = 2048 if cfg.data.use_embeddings else 0
    return cfg


def bench(
    exp: str,
    size: str,
    steps: int,
    warmup: int,
    batch_size: int,
    device: str,
    num_classes: int,
    extra: list[str] | None = None,
    peak: float | None = None,
) -> dict:
    """Time ``steps`` iterations after ``warmup``; returns s/iter, per-phase s/iter (R1 amortised
    over its interval), images/s, peak memory, FLOPs/image and MFU (when the peak is known)."""
    model, cfg = build(exp, size, batch_size, num_classes, extra)
    res = cfg.data.resolution
    kd = cfg.model.kd_dim
    strategy, devices = _data_parallel(cfg)
    local_batch = batch_size // devices  # every rank's part of the global batch
    batch = Batch(
        image=torch.rand(local_batch, 3, res, res) * 2 - 1,
        depth=torch.rand(local_batch, 1, res, res) * 2 - 1,
        label=torch.randint(0, max(num_classes, 1), (local_batch,)),
        embedding=torch.randn(local_batch, kd) if kd > 0 else None,
    )
    interval = int(cfg.model.module.r1_interval)
    # every rank runs steps + warmup + 1 iterations (the distributed sampler splits the items)
    loader = DataLoader(_Fixed(batch, (steps + warmup + 1) * devices), batch_size=None)
    timer = _Timer(warmup + 1)  # the first iteration counts FLOPs (and includes R1)
    clock = _PhaseClock(model, warmup + 1)
    clock.count_flops = True
    model.on_train_batch_end = lambda *a, **k: setattr(clock, "count_flops", False)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(
        accelerator="gpu" if device.startswith("cuda") else device,
        devices=devices,
        strategy=strategy,
        max_epochs=1,
        precision=cfg.trainer.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, train_dataloaders=loader)
    if devices > 1:  # every rank's FLOPs: the iteration's work is the sum over ranks
        clock.flops = {k: v * devices for k, v in clock.flops.items()}
    s_iter = sum(timer.times) / len(timer.times)
    flops = clock.flops["_g_step"] + clock.flops["_d_step"] + clock.flops["_r1_step"] / interval
    phases = {
        name.strip("_").removesuffix("_step"): sum(ts) / max(len(timer.times), 1)
        for name, ts in clock.times.items()
    }
    peak = peak or peak_tflops(device, str(cfg.trainer.precision))
    achieved = flops / s_iter / 1e12
    return {
        "s_per_iter": s_iter,
        "phase_s_per_iter": phases,
        "images_per_s": batch_size / s_iter,
        "cpu_s_per_image": timer.cpu_s_per_iter / batch_size,
        "peak_memory_mib": peak_memory_mib(device),
        "flops_per_image": flops / batch_size,
        "tflops": achieved,
        "mfu": achieved / peak if peak else None,
        "precision": str(cfg.trainer.precision),
        "devices": devices,
        "rank": trainer.global_rank,
    }


def _data_parallel(cfg) -> tuple:
    """(strategy, devices) of an entry: its trainer config's when that asks for several devices
    and a strategy (a launched rank reads the same config), else ("auto", 1)."""
    devices, strat = cfg.trainer.get("devices", 1), cfg.trainer.get("strategy")
    if not isinstance(devices, int) or devices < 2 or strat is None:
        return "auto", 1
    if cfg.data.batch_size % devices:
        raise ValueError(
            f"--batch-size {cfg.data.batch_size} does not split over {devices} devices"
        )
    return instantiate(strat), devices


def _launched_rank() -> bool:
    """Whether this process is a rank that Lightning's launcher started (not the user's)."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--experiments",
        nargs="+",
        default=["epigraf", "3dgp"],
        help="first one is the baseline; EXP,override,... adds Hydra overrides to one entry "
        "(e.g. 3dgp,model.module.compile=true)",
    )
    ap.add_argument("--size", choices=SIZES, default="synthetic")
    ap.add_argument(
        "--steps", type=int, default=16, help="timed iterations (a multiple of r1_interval is fair)"
    )
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=str, default=None, help="also write the results here")
    ap.add_argument(
        "--peak-tflops", type=float, default=None, help="device peak for MFU (default: known GPUs)"
    )
    args = ap.parse_args()
    results = {}
    for entry in args.experiments:  # "3dgp" or "3dgp,model.module.compile=true,..."
        exp, *extra = entry.split(",")
        if _launched_rank() and "trainer=" not in entry:
            continue  # a launched rank joins the distributed entries only
        key = entry if entry not in results else f"{entry} (#{len(results) + 1})"  # A B A
        results[key] = bench(
            exp, args.size, args.steps, args.warmup, args.batch_size, args.device,
            args.num_classes, extra, args.peak_tflops,
        )  # fmt: skip
        if results[key]["rank"] > 0:
            del results[key]
    if _launched_rank():
        return  # rank 0 reports
    print(format_table(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "args": vars(args)}, indent=2))


def format_table(results: dict, args) -> str:
    first = results[args.experiments[0]]
    base, base_cpu = first["s_per_iter"], first["cpu_s_per_image"]
    lines = [
        f"{'experiment':<44}{'s/iter':>8}{'ratio':>7}{'img/s':>8}{'G':>7}{'D':>7}{'R1':>7}"
        f"{'GFLOP/img':>11}{'MFU':>7}{'peak MiB':>10}{'CPU s/img':>10}{'ratio':>7}   "
        f"(size={args.size}, batch={args.batch_size}, {args.device})"
    ]
    for exp, r in results.items():
        ph, mfu = r["phase_s_per_iter"], r["mfu"]
        lines.append(
            f"{exp[:43]:<44}{r['s_per_iter']:>8.3f}{r['s_per_iter'] / base:>7.2f}"
            f"{r['images_per_s']:>8.1f}{ph['g']:>7.3f}{ph['d']:>7.3f}{ph['r1']:>7.3f}"
            f"{r['flops_per_image'] / 1e9:>11.2f}{'' if mfu is None else f'{mfu:.1%}':>7}"
            f"{r['peak_memory_mib']:>10.0f}{r['cpu_s_per_image']:>10.3f}"
            f"{r['cpu_s_per_image'] / base_cpu:>7.2f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
