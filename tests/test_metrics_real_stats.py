"""Real-image statistics: every image once, mirror off, cached by manifest, recomputed when the
data changes."""

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

import gp3d.metrics.real_stats as rs
from data_prep.common import read_manifest
from data_prep.synthetic.dataset import generate_dataset
from gp3d.metrics.feature_net import load_feature_network
from gp3d.metrics.fid import FeatureStats


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("fidreal") / "syn"
    generate_dataset(path, num_samples=20, resolution=16, seed=0, shard_size=8)
    return path


def _all_images(folder):
    """Independent reader: every png in the shards, via tarfile + PIL."""
    m = read_manifest(folder)
    out = []
    for shard in m["shards"]:
        with tarfile.open(folder / shard["name"]) as tar:
            for member in sorted(tar.getmembers(), key=lambda t: t.name):
                if member.name.endswith(".png") and not member.name.endswith(".depth.png"):
                    img = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                    out.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    return torch.stack(out)


def test_stats_cover_every_image_once_unmirrored(dataset, tmp_path):
    net = load_feature_network("random:8")
    stats = rs.real_stats(str(dataset), net, tmp_path, batch_size=6, num_workers=0)
    ref = FeatureStats.of(net(_all_images(dataset)))
    assert stats.n == 20 == ref.n
    np.testing.assert_allclose(stats.mean, ref.mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats.cov, ref.cov, rtol=1e-5, atol=1e-9)
    assert stats.meta["mirror"] is False and stats.meta["feature_net"] == net.name
    # two DataLoader workers read disjoint shards: same statistics
    two = rs.compute_real_stats(str(dataset), read_manifest(dataset), net, 5, num_workers=2)
    np.testing.assert_allclose(two.cov, stats.cov, rtol=1e-9, atol=1e-12)


def test_cache_is_reused_and_keyed_by_network_and_count(dataset, tmp_path, monkeypatch):
    net = load_feature_network("random:8")
    first = rs.real_stats(str(dataset), net, tmp_path, batch_size=8)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and first.meta["cache"] == str(files[0])
    assert not list(tmp_path.glob(".*tmp*"))

    def fail(*a, **k):
        raise AssertionError("recomputed although cached")

    with monkeypatch.context() as m:
        m.setattr(rs, "compute_real_stats", fail)
        again = rs.real_stats(str(dataset), net, tmp_path)
    np.testing.assert_array_equal(again.cov, first.cov)
    assert again.n == first.n
    # another network, another image count or class: separate entries, never mixed up
    other = rs.real_stats(str(dataset), load_feature_network("random:8:1"), tmp_path)
    part = rs.real_stats(str(dataset), net, tmp_path, max_items=10)
    assert part.n == 10 and not np.allclose(other.mean, first.mean)
    labels = [int(v) for v in read_manifest(dataset)["class_counts"]]
    cls = rs.real_stats(str(dataset), net, tmp_path, class_index=0)
    assert cls.n == labels[0]
    assert len(list(tmp_path.glob("*.npz"))) == 4


def test_cache_is_invalidated_when_the_manifest_changes(tmp_path):
    net = load_feature_network("random:8")
    data, cache = tmp_path / "data", tmp_path / "cache"
    generate_dataset(data, num_samples=12, resolution=16, seed=0, shard_size=8)
    before = rs.real_stats(str(data), net, cache)
    generate_dataset(data, num_samples=12, resolution=16, seed=1, shard_size=8, overwrite=True)
    after = rs.real_stats(str(data), net, cache)
    assert after.meta["cache"] != before.meta["cache"]  # new manifest sha -> new key
    assert not np.allclose(after.mean, before.mean)  # recomputed from the new images
    assert len(list(cache.glob("*.npz"))) == 2


def test_kept_features_and_bad_cache_files(dataset, tmp_path):
    net = load_feature_network("random:8")
    stats = rs.real_stats(str(dataset), net, tmp_path, keep_features=7)
    assert stats.features.shape == (7, 8)
    reloaded = rs.real_stats(str(dataset), net, tmp_path, keep_features=7)
    assert torch.equal(reloaded.features, stats.features)
    cache_file = tmp_path / rs.cache_name(read_manifest(dataset), net.name, keep_features=7)
    cache_file.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="unreadable"):
        redone = rs.real_stats(str(dataset), net, tmp_path, keep_features=7)
    assert torch.equal(redone.features, stats.features)
    assert rs.load_stats(cache_file).n == 20  # rewritten
    with pytest.raises(ValueError, match="too few"):
        rs.real_stats(str(dataset), net, None, class_index=99)


def _kept_worker(rank: int, world: int, init: str, data: str, out: str):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        net = load_feature_network("random:8")
        s = rs.compute_real_stats(data, read_manifest(data), net, 5, keep_features=20)
        torch.save(s.features, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_kept_features_are_the_first_images_whatever_the_workers(dataset):
    """KID / precision-recall reals: the first N images in dataset order, also when DataLoader
    workers interleave shards."""
    net = load_feature_network("random:8")
    ref = net(_all_images(dataset))
    manifest = read_manifest(dataset)
    two = rs.compute_real_stats(str(dataset), manifest, net, 3, num_workers=2, keep_features=10)
    torch.testing.assert_close(two.features, ref[:10])


@pytest.mark.slow
def test_kept_features_are_the_first_images_whatever_the_ranks(dataset, tmp_path):
    """Two gloo ranks (shards of 8, 8, 4 split 12 / 8) keep all 20 features, in dataset order."""
    import torch.multiprocessing as mp

    ref = load_feature_network("random:8")(_all_images(dataset))
    out = str(tmp_path / "kept")
    init = f"file://{tmp_path / 'pg'}"
    mp.spawn(_kept_worker, args=(2, init, str(dataset), out), nprocs=2, join=True)
    for rank in range(2):
        torch.testing.assert_close(torch.load(f"{out}.{rank}"), ref)
