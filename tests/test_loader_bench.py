"""The loader benchmark compares like with like: both pipelines give the same batches."""

import torch

from data_prep.synthetic import dataset as synthetic
from gp3d.bench.loader import run, webdataset_tar_pipeline
from gp3d.data.format import read_manifest, shard_paths
from gp3d.data.shards import make_pipeline


def test_both_loaders_yield_the_same_batches(tmp_path):
    path = tmp_path / "d"
    synthetic.generate_dataset(path, num_samples=24, resolution=16, seed=0, shard_size=8)
    urls = shard_paths(str(path), read_manifest(str(path)))
    ours = list(make_pipeline(urls, resolution=16, per_device_batch=4, num_batches=5,
                              shuffle_buffer=6, xflip=False))  # fmt: skip
    theirs = list(webdataset_tar_pipeline(urls, 16, 4, 5, 6))
    assert len(ours) == len(theirs) == 5
    for a, b in zip(ours, theirs):
        assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)
    out = run(str(path), batch=4, num_images=8, repeats=1, shuffle_buffer=6)
    assert set(out["best"]) == {"gp3d", "webdataset tar"} and min(out["best"].values()) > 0
