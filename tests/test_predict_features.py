"""predict_features: teacher features through Lightning Trainer.predict; 1 vs 2 processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep import common
from data_prep import extract_features as ef
from data_prep import predict_features as pf
from data_prep.synthetic import dataset as synthetic

MODEL, SIZE = "resnet10t", 32
KW = dict(model_name=MODEL, weights="random", input_size=SIZE, batch_size=4)
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:teacher features come from a random network")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # shards are compared byte for byte: fixed thread count
    yield


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "src"
    synthetic.generate_dataset(path, num_samples=12, resolution=SIZE, shard_size=4)
    return path


@pytest.fixture(scope="module")
def ref(src, tmp_path_factory):  # the one-process engine
    path = tmp_path_factory.mktemp("data") / "ref"
    ef.extract_features(src, path, **KW)
    return path


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*")) if p.is_file()}


def _stop_after_first(done, total):
    if done == 1:
        raise KeyboardInterrupt


def test_resumes_extract_features_and_writes_its_bytes(src, ref, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):  # a killed run: one shard of three written
        ef.extract_features(src, out, on_shard=_stop_after_first, **KW)
    res = pf.predict_features(src, out, accelerator="cpu", **KW)
    assert res["written"] == 8 and res["world_size"] == 1  # the two missing shards only
    assert _files(out) == _files(ref)  # shards and manifest, byte for byte
    again = pf.predict_features(src, out, accelerator="cpu", **KW)
    assert again["written"] == 0  # finished: nothing runs
    assert common.read_manifest(out, verify_checksums=True)["embedding_dim"] == 512


def test_bf16_features_are_recorded_and_not_mixed(src, ref, tmp_path):
    out = tmp_path / "bf16"
    pf.predict_features(src, out, accelerator="cpu", precision="bf16-mixed", **KW)
    manifest = common.read_manifest(out, verify_checksums=True)
    assert manifest["teacher"]["precision"] == "bf16-mixed"
    with pytest.raises(FileExistsError, match="other features"):  # fp32 into bf16: refused
        pf.predict_features(src, out, accelerator="cpu", **KW)


@pytest.mark.slow
def test_two_processes_write_the_bytes_of_one(src, ref, tmp_path):
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "data_prep.predict_features", str(src), "--out", str(out), "--model", MODEL,
           "--random-init", "--input-size", str(SIZE), "--batch-size", "4", "--accelerator",
           "cpu", "--quiet"]  # fmt: skip
    run = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "features of 12 images written by 2 process(es)" in run.stdout
    assert _files(out) == _files(ref)
