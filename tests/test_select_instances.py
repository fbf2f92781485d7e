"""Instance selection: Gaussian scores against scipy, keep rules, outliers dropped, and the tool
end to end on photographs (random feature network) into write_shards, with cached features."""

import json

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from data_prep import common
from data_prep import select_instances as si
from data_prep import write_shards as ws
from data_prep.features.instance_scores import gaussian_log_likelihood, num_to_keep, top_indices
from data_prep.folder_source import read_selection
from tests.photo_dataset import make_photo_dataset

NET = "random:4"  # 4-d features: more images per class than dimensions, so the fit is real


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # see conftest.one_thread
    yield


def test_scores_match_scipy_gaussian():
    x = np.random.default_rng(0).normal(size=(50, 6)) @ np.diag([1, 2, 3, 0.5, 1, 4])
    reg = 1e-3
    cov = np.cov(x, rowvar=False, bias=True) + reg * np.eye(6)  # ML covariance, as sklearn's EM
    want = multivariate_normal(x.mean(0), cov).logpdf(x)
    assert np.allclose(gaussian_log_likelihood(x, reg), want, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="--reg-covar"):
        gaussian_log_likelihood(x[:3], reg_covar=0.0)  # 3 images in 6 dimensions: singular
    assert np.isfinite(gaussian_log_likelihood(x[:3], reg_covar=1e-5)).all()


def test_keep_rules():
    assert num_to_keep(1300, keep_ratio=0.5) == 650 and num_to_keep(3, keep_ratio=0.1) == 1
    assert num_to_keep(10, num_keep=20) == 10 and num_to_keep(0, keep_ratio=0.5) == 0
    with pytest.raises(ValueError):
        num_to_keep(10, keep_ratio=0.5, num_keep=3)
    with pytest.raises(ValueError):
        num_to_keep(10, keep_ratio=1.5)
    assert top_indices(np.array([1.0, 3.0, 3.0, 2.0]), 2).tolist() == [1, 2]


def test_outliers_are_dropped_per_group():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(60, 3))
    feats[[5, 40]] += 25.0  # one outlier in each group
    groups = np.repeat([0, 1], 30)
    kept, scores = si.select(feats, groups, keep_ratio=0.9, reg_covar=1e-6)
    assert kept.sum() == 2 * 27 and not kept[5] and not kept[40]
    assert np.isfinite(scores).all()
    kept_all, _ = si.select(feats, np.zeros(60), num_keep=58)  # one global Gaussian
    assert kept_all.sum() == 58 and not kept_all[5] and not kept_all[40]


def test_tool_end_to_end_into_write_shards(tmp_path, capsys):
    ds = make_photo_dataset(tmp_path / "src", per_class=6, max_side=48, train_subdir=True)
    sel = tmp_path / "sel.txt"
    argv = [str(ds.src), "--out", str(sel), "--keep-ratio", "0.5", "--feature-net", NET,
            "--image-size", "32", "--batch-size", "8", "--workers", "0", "--quiet"]  # fmt: skip
    assert si.main(argv) == 0
    chosen = read_selection(sel)
    summary = json.loads((tmp_path / "sel.txt.json").read_text())
    assert summary["subdir_wise"] and summary["feature_net"].startswith("random:4")
    # unreadable/truncated files are left out and counted; per class floor(n / 2) kept
    assert summary["skipped"] == {"truncated": 1, "unreadable": 1}
    for name, c in summary["classes"].items():
        assert c["kept"] == max(1, c["images"] // 2), name
    assert len(chosen) == summary["num_kept"] == sum(c["kept"] for c in summary["classes"].values())
    # the kept images of each class are exactly its highest scores
    rows = [line.split("\t") for line in (tmp_path / "sel.txt.scores.tsv").read_text().splitlines()]
    by_class: dict[str, list] = {}
    for rel, score, kept, _ in rows[1:]:
        if score:
            by_class.setdefault(rel.split("/")[0], []).append((float(score), kept == "1"))
    for items in by_class.values():
        kept_scores = [s for s, k in items if k]
        dropped = [s for s, k in items if not k]
        assert not dropped or min(kept_scores) >= max(dropped)
    # write_shards consumes the selection
    res = ws.write_shards(ds.src, tmp_path / "shards", resolution=32, shard_size=8, select=sel)
    manifest = common.read_manifest(tmp_path / "shards")
    assert manifest["source"]["selection"]["kept"] == len(chosen)
    recorded = manifest["source"]["selection"]["summary"]  # how the subset was chosen
    assert recorded["keep_ratio"] == 0.5 and recorded["skipped"] == summary["skipped"]
    assert recorded["feature_net"] == summary["feature_net"] and "classes" not in recorded
    assert res.num_samples == len([c for c in chosen if c in ds.kept])
    # a re-run with another ratio reuses every cached feature
    before = sel.read_text()
    res = si.select_instances(ds.src, sel, keep_ratio=0.5, feature_net=NET, image_size=32)
    assert (res.chunks_computed, res.chunks_reused) == (0, 1) and sel.read_text() == before
    res = si.select_instances(ds.src, sel, num_keep=2, feature_net=NET, image_size=32)
    assert res.chunks_computed == 0 and res.num_kept == 2 * 5


def test_flat_folder_is_global_and_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        si.main(["--help"])
    assert exc.value.code == 0 and "--keep-ratio" in capsys.readouterr().out
    ds = make_photo_dataset(tmp_path / "src", per_class=2, max_side=48, odd_files=False)
    flat = tmp_path / "flat"
    flat.mkdir()
    for rel in ds.kept:
        (flat / rel.replace("/", "_")).write_bytes((ds.image_root / rel).read_bytes())
    res = si.select_instances(flat, tmp_path / "s.txt", keep_ratio=0.8, feature_net=NET,
                              image_size=32)  # fmt: skip
    summary = json.loads((tmp_path / "s.txt.json").read_text())
    assert not summary["subdir_wise"] and res.num_kept == 8  # floor(10 * 0.8)
    assert si.main([str(flat), "--out", str(tmp_path / "x"), "--keep-ratio", "2",
                    "--feature-net", NET]) == 1  # fmt: skip
    assert "keep_ratio" in capsys.readouterr().err
