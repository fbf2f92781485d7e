"""FID during training: fakes under the spec-8.1 protocol, split over 2 gloo processes with the
same result as one process, best.ckpt tracking, and the callback inside a real training run."""

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gp3d.callbacks.checkpoint import BestCheckpoint
from gp3d.callbacks.fid import fid_of_generator, metric_name
from gp3d.inference.portable import load_generator
from gp3d.inference.sampling import class_mean_w
from gp3d.metrics.fakes import fake_features, render_uint8
from gp3d.metrics.feature_net import load_feature_network
from gp3d.metrics.real_stats import real_stats

NUM_FAKES, BATCH = 10, 3  # 4 global batches: rank 0 renders batches 0 and 2, rank 1 1 and 3


def _evaluate(ckpt: str, data: str, cache: str) -> dict:
    torch.set_num_threads(1)
    G = load_generator(ckpt).G
    net = load_feature_network("random:16")
    reals = real_stats(data, net, cache, batch_size=5)
    counts = json.loads((Path(data) / "manifest.json").read_text())["class_counts"]
    feats = fake_features(G, net, NUM_FAKES, BATCH, counts, seed=3).features
    fid = fid_of_generator(G, net, reals, NUM_FAKES, BATCH, counts, seed=3)
    return {"fid": fid, "features": feats, "real_mean": torch.from_numpy(reals.mean)}


def _worker(rank: int, world: int, init: str, ckpt: str, data: str, cache: str, out: str):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        result = _evaluate(ckpt, data, cache)
        cached = _evaluate(ckpt, data, cache)  # second pass: rank 0 reads the cache, shares it
        result["cached_fid"] = cached["fid"]
        torch.save(result, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_fid(tiny_run, tmp_path):
    args = (str(tiny_run["ckpt"]), str(tiny_run["data"]))
    init = f"file://{tmp_path / 'pg'}"
    out = str(tmp_path / "ddp.pt")
    # separate caches, so the DDP run computes its real statistics split over ranks too
    mp.spawn(_worker, args=(2, init, *args, str(tmp_path / "c2"), out), nprocs=2, join=True)
    single = _evaluate(*args, str(tmp_path / "c1"))
    r0, r1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    assert r0["fid"] == r1["fid"]  # identical on every rank (broadcast)
    assert r0["cached_fid"] == r1["cached_fid"] == pytest.approx(r0["fid"], rel=1e-9)
    assert len(list((tmp_path / "c2").glob("*.npz"))) == 1
    assert r0["fid"] == pytest.approx(single["fid"], rel=1e-6)
    assert r0["features"].shape == (NUM_FAKES, 16)
    torch.testing.assert_close(r0["features"], single["features"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r0["real_mean"], single["real_mean"], rtol=1e-9, atol=1e-12)


def test_fakes_follow_the_protocol(tiny_run):
    G = load_generator(tiny_run["ckpt"]).G
    a = render_uint8(G, 3, seed=5, class_counts=[1] * max(G.c_dim, 1))
    b = render_uint8(G, 3, seed=5, class_counts=[1] * max(G.c_dim, 1))
    assert a.dtype == torch.uint8 and a.shape == (3, 3, G.img_resolution, G.img_resolution)
    assert torch.equal(a, b)  # seeded per batch: reproducible
    assert not torch.equal(a, render_uint8(G, 3, seed=6))
    net = load_feature_network("random:16")
    f = fake_features(G, net, 7, batch_size=7, seed=0, with_logits=True)
    assert f.features.shape == (7, 16) and f.logits.shape == (7, 10)
    with pytest.raises(NotImplementedError, match="Inception Score"):
        script = torch.jit.script(torch.nn.Identity())
        path = Path(tiny_run["dir"]) / "id.pt"
        script.save(str(path))
        fake_features(G, load_feature_network(str(path)), 2, with_logits=True)


def test_metric_names_follow_the_original():
    assert metric_name("fid", 2048) == "fid2k"
    assert metric_name("fid", 50000) == "fid50k"
    assert metric_name("fid", 256) == "fid256"


class _FakeTrainer:
    def __init__(self, root):
        self.default_root_dir, self.is_global_zero, self.global_step = str(root), True, 7
        self.saved = []

    def save_checkpoint(self, path):
        self.saved.append(Path(path))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"ckpt")


def test_best_checkpoint_saves_only_on_improvement(tmp_path):
    trainer, best = _FakeTrainer(tmp_path), BestCheckpoint("val/fid2k", mode="min")
    assert best.update(trainer, 50.0, kimg=1.0)
    assert not best.update(trainer, 60.0, kimg=2.0)
    assert not best.update(trainer, float("nan"), kimg=2.5)
    assert best.update(trainer, 40.0, kimg=3.0)
    assert trainer.saved == [tmp_path / "checkpoints" / "best.ckpt"] * 2
    info = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert info["value"] == 40.0 and info["kimg"] == 3.0 and info["metric"] == "val/fid2k"
    resumed = BestCheckpoint("val/fid2k")
    resumed.load_state_dict(best.state_dict())
    assert not resumed.update(trainer, 45.0, kimg=4.0)  # a resumed run keeps the old best
    with pytest.raises(ValueError, match="mode"):
        BestCheckpoint("x", mode="lowest")


def test_resumed_best_checkpoint_never_overwrites_a_better_saved_best(tmp_path):
    """last.ckpt is saved before the FID of the same batch: a run resumed from it restores an
    older best (50) than best.ckpt holds (40); 45 must not replace best.ckpt."""
    trainer, best = _FakeTrainer(tmp_path), BestCheckpoint("val/fid2k", mode="min")
    assert best.update(trainer, 50.0, kimg=1.0)
    stale = best.state_dict()  # what last.ckpt holds
    assert best.update(trainer, 40.0, kimg=2.0)
    resumed = BestCheckpoint("val/fid2k", mode="min")
    resumed.load_state_dict(stale)
    assert not resumed.update(trainer, 45.0, kimg=3.0)
    assert resumed.best_value == 40.0 and resumed.best_kimg == 2.0
    assert json.loads((tmp_path / "checkpoints" / "best.json").read_text())["value"] == 40.0
    assert resumed.update(trainer, 30.0, kimg=4.0)
    # another metric's best.json is not adopted
    other = BestCheckpoint("val/nfs256", mode="max")
    assert other.update(trainer, 2.0, kimg=5.0)


def test_training_run_logs_fid_and_keeps_best_checkpoint(tiny_run):
    """The smoke experiment (used by the tiny_run fixture) evaluates val/fid8 at the end."""
    rows = (tiny_run["dir"] / "logs" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "val/fid8" in header
    col = header.index("val/fid8")
    values = [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]
    assert len(values) == 1 and values[0] > 0
    best = tiny_run["dir"] / "checkpoints" / "best.ckpt"
    info = json.loads(best.with_suffix(".json").read_text())
    assert info["value"] == pytest.approx(values[0])
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    state = ckpt["callbacks"]["FIDCallback[val/fid8]"]
    assert state["best"]["best_value"] == pytest.approx(values[0])
    assert os.path.isdir(Path(tiny_run["data"]).parent / "fid_stats")  # default cache location


@pytest.mark.slow
def test_ddp_training_run_logs_the_single_process_fid(tmp_path):
    """A real 2-process (gloo) training run of the smoke experiment: the val/fid8 it logs equals
    a single-process evaluation of the weights it saved as best.ckpt."""
    import subprocess
    import sys

    from tests.helpers import TINY

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "gp3d.train", "experiment=smoke", *TINY, "trainer=ddp_sim"]
    cmd += ["data.batch_size=8", "model.total_kimg=0.016", f"paths.data_dir={tmp_path / 'data'}"]
    cmd += [f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt_dir = tmp_path / "run" / "checkpoints"
    logged = json.loads((ckpt_dir / "best.json").read_text())["value"]
    data = next((tmp_path / "data" / "cache").glob("synthetic*"))
    G = load_generator(ckpt_dir / "best.ckpt").G
    net = load_feature_network("random:16")
    reals = real_stats(str(data), net, None)
    counts = json.loads((data / "manifest.json").read_text())["class_counts"]
    single = fid_of_generator(G, net, reals, 8, batch_size=4, class_counts=counts, seed=0)
    assert logged == pytest.approx(single, rel=1e-5)


def test_truncated_fakes_of_a_conditional_generator_go_toward_the_class_mean(tiny_run):
    """psi < 1 truncates toward the class-wise mean w (spec 8.3), as inference does; psi = 0
    makes every sample of a class use that class's mean w, not the running mean w_avg."""
    G = load_generator(tiny_run["ckpt"]).G
    assert G.c_dim > 1
    seen, synthesis = [], G.synthesis.forward
    G.synthesis.forward = lambda ws, **kw: seen.append(ws) or synthesis(ws, **kw)
    try:
        render_uint8(G, 3, seed=5, class_index=1, truncation_psi=0.0)
        psi_half = render_uint8(G, 3, seed=5, class_index=1, truncation_psi=0.5)
        untruncated = render_uint8(G, 3, seed=5, class_index=1)
    finally:
        del G.synthesis.forward
    mean1 = class_mean_w(G, torch.eye(G.c_dim)[1:2])[0]
    torch.testing.assert_close(seen[0], mean1.expand_as(seen[0]))
    assert not torch.allclose(mean1, G.mapping.w_avg)
    torch.testing.assert_close(seen[1], torch.lerp(seen[0], seen[2], 0.5))
    assert not torch.equal(psi_half, untruncated)
