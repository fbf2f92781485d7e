"""The trained distillation teacher of the synthetic data (data_prep/synthetic/teacher.py)."""

import io
import os

import numpy as np
import pytest
import torch

from data_prep import common
from data_prep.extract_features import read_shard
from data_prep.synthetic import teacher as kt

SIZE, MODEL = 16, "test_resnet"  # timm's tiny ResNet (96-d features): seconds on one core
COLOURS = ((0.8, 0.2, 0.2), (0.2, 0.3, 0.8))  # two classes anyone can tell apart


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # see conftest.one_thread
    yield


def write_easy_dataset(folder, per_class: int = 48, shard_size: int = 32, seed: int = 0):
    """Red-ish vs blue-ish noisy squares with random brightness, classes interleaved."""
    rng = np.random.default_rng(seed)
    labels = np.arange(2 * per_class) % 2
    folder.mkdir(parents=True)
    shards = []
    for k, lo in enumerate(range(0, len(labels), shard_size)):
        dst = folder / common.SHARD_PATTERN.format(k)
        with common.AtomicShardWriter(dst) as writer:
            for i in range(lo, min(lo + shard_size, len(labels))):
                rgb = np.array(COLOURS[labels[i]]) * rng.uniform(0.6, 1.2)
                img = np.clip(rgb + rng.normal(0, 0.15, (SIZE, SIZE, 3)), 0, 1)
                writer.write(
                    {
                        "__key__": f"{i:08d}",
                        "png": common.encode_png((img * 255).astype(np.uint8)),
                        "depth.png": common.encode_relative_depth(np.ones((SIZE, SIZE))),
                        "cls": str(int(labels[i])),
                    }
                )
        shards.append(writer.shard_info)
    common.write_manifest(
        folder,
        {
            "format": {"name": common.FORMAT_NAME, "version": common.FORMAT_VERSION},
            "generator": {"name": "tests.easy", "version": "0", "params": {}},
            "seed": seed, "num_samples": len(labels), "resolution": SIZE, "num_classes": 2,
            "class_names": ["red", "blue"], "class_counts": [per_class, per_class],
            "keys": ["png", "depth.png", "cls"], "shards": shards,
            "depth": common.DEPTH_DESCRIPTION, "embedding_dim": None,
        },
    )  # fmt: skip
    return folder


def _snapshot(folder):
    return {p.name: (common.file_sha256(p), p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    return write_easy_dataset(tmp_path_factory.mktemp("data") / "easy")


@pytest.fixture(scope="module")
def built(easy):
    """(copy folder, report, snapshot of the source before the build)."""
    before = _snapshot(easy)
    out = easy.parent / "easy_teacher"
    out_path, report = kt.build_teacher_dataset(
        easy, out, model_name=MODEL, input_size=SIZE, epochs=3, holdout=0.25
    )
    return out_path, report, before


def test_teacher_beats_chance_on_an_easy_set(built):
    _, report, _ = built
    assert (report.train_images, report.heldout_images) == (72, 24)
    assert report.heldout_accuracy >= 0.9  # chance is 0.5
    assert report.feature_dim == 96 and report.num_classes == 2


def test_teacher_training_is_deterministic_for_a_seed(easy):
    images, labels, _ = kt.load_images(easy, MODEL, SIZE)
    a, b, c = (
        kt.train_classifier(images[:32], labels[:32], 2, MODEL, epochs=1, batch_size=16, seed=s)
        for s in (0, 0, 1)
    )
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert any(
        not torch.equal(pa, pc)
        for pa, pc in zip(a.state_dict().values(), c.state_dict().values(), strict=True)
    )


def test_copy_has_teacher_features_and_source_is_untouched(built, easy):
    out, report, before = built
    assert _snapshot(easy) == before
    src = common.read_manifest(easy)
    manifest = common.read_manifest(out, verify_checksums=True)
    assert manifest["embedding_dim"] == report.feature_dim
    assert "emb.npy" in manifest["keys"] and manifest["num_samples"] == src["num_samples"]
    assert manifest["teacher"]["weights"].startswith("local file")
    samples = [s for p in common.shard_paths(out, manifest) for s in read_shard(p)]
    originals = [s for p in common.shard_paths(easy, src) for s in read_shard(p)]
    assert [s["png"] for s in samples] == [s["png"] for s in originals]
    feats = np.stack([np.load(io.BytesIO(s["emb.npy"])) for s in samples])
    assert feats.shape == (src["num_samples"], report.feature_dim) and np.isfinite(feats).all()
    # the features are the trained network's: they separate the two classes
    labels = np.array([int(s["cls"]) for s in samples])
    centre = [feats[labels == k].mean(0) for k in (0, 1)]
    nearest = np.argmin([np.linalg.norm(feats - c, axis=1) for c in centre], axis=0)
    assert (nearest == labels).mean() >= 0.9
    assert not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir())  # no staging


def test_rerun_is_a_no_op(built, easy, monkeypatch):
    out, report, _ = built
    copy_before = _snapshot(out)

    def no_training(*a, **k):
        raise AssertionError("the teacher was trained again")

    monkeypatch.setattr(kt, "train_classifier", no_training)
    again_out, again = kt.build_teacher_dataset(
        easy, out, model_name=MODEL, input_size=SIZE, epochs=3, holdout=0.25
    )
    assert (again_out, again) == (out, report)
    assert _snapshot(out) == copy_before


def test_copy_of_another_teacher_is_refused(built, easy, tmp_path):
    out, _, _ = built
    weights = tmp_path / "other.pth"
    kt.ensure_teacher_weights(easy, weights, MODEL, SIZE, epochs=1, seed=1)
    with pytest.raises(FileExistsError, match="another teacher"):
        kt.write_teacher_copy(easy, out, weights, MODEL, SIZE)


def test_interrupted_copy_leaves_nothing_readable_and_resumes(easy, tmp_path, monkeypatch):
    weights = tmp_path / "w.pth"
    kt.ensure_teacher_weights(easy, weights, MODEL, SIZE, epochs=1)
    out = tmp_path / "copy"
    import data_prep.extract_features as ef

    real = ef._embed_shard
    calls = []

    def crash_on_second(*a):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(ef, "_embed_shard", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        kt.write_teacher_copy(easy, out, weights, MODEL, SIZE)
    assert not out.exists()
    monkeypatch.setattr(ef, "_embed_shard", real)
    assert kt.write_teacher_copy(easy, out, weights, MODEL, SIZE)
    assert common.read_manifest(out, verify_checksums=True)["embedding_dim"] == 96


def test_cli_reports_accuracy(easy, tmp_path, capsys):
    out = tmp_path / "cli_copy"
    argv = [str(easy), "--out", str(out), "--model", MODEL, "--input-size", str(SIZE)]
    assert kt.main([*argv, "--epochs", "1", "--holdout", "0.25"]) == 0
    assert "held-out accuracy" in capsys.readouterr().out
    assert kt.main([str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 1
    assert "error:" in capsys.readouterr().err
    assert os.path.isfile(out / common.MANIFEST_NAME)


def test_kd_trained_ablation_prepares_its_own_dataset(tmp_path):
    """The ablation's data.prepare node makes the source, the teacher and the copy, and the copy's
    features have the size the config gives D's distillation head."""
    from gp3d.data.prepare import prepare_dataset
    from tests.helpers import compose_train

    overrides = [
        "experiment=synthetic_fast", "ablation=kd_trained", "data.prepare.num_samples=12",
        "data.prepare.teacher=null", "data.prepare.teacher_epochs=1",
    ]  # fmt: skip
    cfg = compose_train(overrides, tmp_path, tmp_path)
    assert cfg.data.use_embeddings and cfg.model.module.kd_weight[0] > 0
    data = prepare_dataset(cfg.data)
    manifest = common.read_manifest(data.path)
    assert manifest["embedding_dim"] == cfg.model.kd_dim
    assert manifest["teacher"]["model"] == cfg.data.prepare.teacher_model
    source = common.read_manifest(cfg.data.prepare.source)
    assert "emb.npy" not in source["keys"]  # the source keeps its own (here: no) features
    assert any((tmp_path / "cache" / "teachers").glob("*.pth"))
