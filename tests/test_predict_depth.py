"""predict_depth: Lightning Trainer.predict, per-rank atomic writer, resume, 1 vs 2 processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep import predict_depth as pd
from data_prep.depth.predict import global_batches, rank_batches
from data_prep.images import load_depth
from tests.photo_dataset import make_photo_dataset

TINY = "random:depth-anything-tiny"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # maps are compared byte for byte: fixed thread count
    yield


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    return make_photo_dataset(tmp_path_factory.mktemp("b") / "src", per_class=2, depth="none")


@pytest.fixture(scope="module")
def one(bare, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "depth"
    res = pd.predict_depth(bare.src, out, model=TINY, batch_size=3, accelerator="cpu")
    assert res["world_size"] == 1 and res["written"] == bare.num_kept + 1  # + the 5x4 image
    return out


def _maps(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*_depth.png")}


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_every_batch_runs_once_whatever_the_world(world):
    batches = global_batches(23, 4)
    assert [i for b in batches for i in b] == list(range(23))
    mine = [rank_batches(batches, r, world) for r in range(world)]
    assert sorted(b.start for m in mine for b in m) == [b.start for b in batches]


def test_maps_info_and_resume(bare, one, tmp_path):
    maps = _maps(one)
    info = json.loads((one / "depth_info.json").read_text())
    assert info["num_maps"] == len(maps) == bare.num_kept + 1
    assert info["skipped"] == {"truncated": 1, "unreadable": 1}
    assert info["engine"]["world_size"] == 1
    for rel in bare.kept:  # at the image's size, per-image max 60000
        d = load_depth(one / f"{rel.rsplit('.', 1)[0]}_depth.png")
        assert d.shape == Image.open(bare.image_root / rel).size[::-1] and d.max() == 60000
    # a killed run: some maps missing, a temp file left; the resume writes exactly those
    out = tmp_path / "resume"
    out.mkdir()
    for rel, data in list(maps.items())[::3]:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    (out / ".x_depth.png.tmp-1").write_bytes(b"half")
    state = ".estimate-depth.json"  # the parameters a killed run recorded first
    (out / state).write_bytes((one / state).read_bytes())
    res = pd.predict_depth(bare.src, out, model=TINY, batch_size=3, accelerator="cpu")
    assert res["written"] == len(maps) - len(list(maps)[::3])
    res = pd.predict_depth(bare.src, out, model=TINY, batch_size=3, accelerator="cpu")
    assert res["written"] == 0  # finished: nothing runs again
    assert _maps(out) == maps and not list(out.rglob("*.tmp-*"))
    with pytest.raises(FileExistsError, match="other parameters"):
        pd.predict_depth(bare.src, out, model=TINY, seed=1, accelerator="cpu")


def test_bf16_knob(bare, one, tmp_path):
    res = pd.predict_depth(bare.src, tmp_path / "bf16", model=TINY, batch_size=4,
                           precision="bf16-mixed", accelerator="cpu")  # fmt: skip
    maps = _maps(tmp_path / "bf16")
    assert res["maps"] == len(maps) == len(_maps(one))
    assert (
        json.loads((tmp_path / "bf16/depth_info.json").read_text())["estimator"]["precision"]
        == "bf16-mixed"
    )
    a, b = (load_depth(f / next(iter(maps))).astype(float) for f in (tmp_path / "bf16", one))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9  # bf16 rounding, the same maps
    with pytest.raises(ValueError, match="precision"):
        pd.predict_depth(bare.src, tmp_path / "x", model=TINY, precision="bf16-true")


@pytest.mark.slow
def test_two_processes_write_the_bytes_of_one(bare, one, tmp_path):
    """torchrun, 2 CPU processes (gloo), as on a GPU node: identical maps, one skip list."""
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "data_prep.predict_depth", str(bare.src), "--out", str(out), "--model", TINY,
           "--batch-size", "3", "--workers", "0", "--accelerator", "cpu", "--quiet"]  # fmt: skip
    run = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "written by 2 process(es)" in run.stdout
    assert _maps(out) == _maps(one)
    info = json.loads((out / "depth_info.json").read_text())
    assert info["engine"]["world_size"] == 2
    assert info["skipped"] == json.loads((one / "depth_info.json").read_text())["skipped"]
