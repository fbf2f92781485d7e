"""Teacher features (spec 6.5 / 9 step 5): shards gain emb.npy; resumable, atomic, offline.

Random-init tiny timm models at 32 px keep this fast; nothing touches the network.
"""

import io
import os
import shutil

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from data_prep import common
from data_prep import extract_features as ef
from data_prep.features.teacher import RANDOM_DESCRIPTION, TeacherWeightsError
from data_prep.synthetic import dataset as synthetic
from gp3d.data.datamodule import GP3DDataModule

MODEL, DIM, SIZE = "resnet10t", 512, 32
KW = dict(model_name=MODEL, weights="random", input_size=SIZE, batch_size=4)
pytestmark = pytest.mark.filterwarnings("ignore:teacher features come from a random network")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # see conftest.one_thread
    yield


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "src"
    synthetic.generate_dataset(path, num_samples=12, resolution=SIZE, shard_size=6)
    return path


@pytest.fixture(scope="module")
def dst(src, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "dst"
    with pytest.warns(UserWarning, match="random network"):
        res = ef.extract_features(src, path, **KW)
    assert (res.shards_written, res.shards_skipped, res.images) == (2, 0, 12)
    return path


def _stop_after_first(done, total):
    if done == 1:
        raise KeyboardInterrupt


def _samples(folder):
    manifest = common.read_manifest(folder, verify_checksums=True)
    return [s for p in common.shard_paths(folder, manifest) for s in ef.read_shard(p)]


def _embeddings(folder) -> np.ndarray:
    return np.stack([np.load(io.BytesIO(s["emb.npy"])) for s in _samples(folder)])


def test_every_sample_gains_an_embedding(src, dst):
    manifest = common.read_manifest(dst, verify_checksums=True)
    assert manifest["embedding_dim"] == DIM and manifest["keys"][-1] == "emb.npy"
    teacher = manifest["teacher"]
    assert teacher["model"] == MODEL and teacher["weights"] == RANDOM_DESCRIPTION
    assert teacher["input_size"] == [3, SIZE, SIZE] and teacher["dtype"] == "float32"
    assert set(teacher["normalisation"]) == {"mean", "std"}
    emb = _embeddings(dst)
    assert emb.shape == (12, DIM) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert emb.std(0).max() > 0  # differs between images
    # Everything else is carried over byte for byte; the source is untouched.
    for a, b in zip(_samples(src), _samples(dst), strict=True):
        assert {k: v for k, v in b.items() if k != "emb.npy"} == a
    assert "emb.npy" not in common.read_manifest(src)["keys"]


def test_features_are_deterministic(src, dst, tmp_path):
    ef.extract_features(src, tmp_path / "again", **KW)
    np.testing.assert_array_equal(_embeddings(tmp_path / "again"), _embeddings(dst))
    ef.extract_features(src, tmp_path / "seed1", **KW, seed=1)
    assert not np.allclose(_embeddings(tmp_path / "seed1"), _embeddings(dst))


def test_local_weights_file_matches_the_saved_model(src, tmp_path):
    torch.manual_seed(123)
    model = timm.create_model(MODEL, num_classes=10).eval()  # with a classifier: it is dropped
    weights = tmp_path / "teacher.pth"
    torch.save(model.state_dict(), weights)
    out = ef.extract_features(src, tmp_path / "out", **{**KW, "weights": weights}).path
    assert common.read_manifest(out)["teacher"]["weights"] == f"local file {weights.resolve()}"
    # Reference: timm's eval transform of the full image, pooled pre-logit features.
    cfg = resolve_data_config({"input_size": (3, SIZE, SIZE)}, model=model)
    transform = create_transform(**cfg)
    images = [transform(Image.open(io.BytesIO(s["png"])).convert("RGB")) for s in _samples(src)]
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(torch.stack(images)), pre_logits=True)
    np.testing.assert_allclose(_embeddings(out), ref.numpy(), rtol=1e-4, atol=1e-5)

    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "other.pth")
    with pytest.raises(TeacherWeightsError, match="does not match"):
        ef.extract_features(src, tmp_path / "bad", **{**KW, "weights": tmp_path / "other.pth"})
    with pytest.raises(TeacherWeightsError, match="not found"):
        ef.extract_features(src, tmp_path / "bad", **{**KW, "weights": tmp_path / "none.pth"})


def test_datamodule_reads_embeddings(dst):
    dm = GP3DDataModule(
        str(dst), batch_size=4, num_workers=0, shuffle_buffer=4, epoch_images=8,
        use_embeddings=True,
    )  # fmt: skip
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert dm.embedding_dim == DIM
    assert batch.embedding.shape == (4, DIM) and batch.embedding.dtype == torch.float32


def test_rerun_reuses_finished_output(src, dst):
    mtimes = {p.name: p.stat().st_mtime_ns for p in dst.iterdir()}
    res = ef.extract_features(src, dst, **KW)
    assert (res.shards_written, res.shards_skipped) == (0, 2)
    assert ef.ensure_teacher_features(src, dst, MODEL, "random", SIZE) == dst
    assert {p.name: p.stat().st_mtime_ns for p in dst.iterdir()} == mtimes
    with pytest.raises(FileExistsError, match="overwrite"):  # another teacher: not silently
        ef.extract_features(src, dst, **{**KW, "input_size": 16})


def test_interrupted_run_resumes(src, dst, tmp_path, monkeypatch):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        ef.extract_features(src, out, **KW, on_shard=_stop_after_first)
    with pytest.raises(common.DatasetNotFoundError, match="not a finished dataset"):
        common.read_manifest(out)
    first = (out / "shard-000000.tar").stat().st_mtime_ns

    # Dying inside a shard leaves no shard and no temp file behind.
    def boom(self, images):
        raise RuntimeError("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(ef.Teacher, "__call__", boom)
        with pytest.raises(RuntimeError, match="simulated"):
            ef.extract_features(src, out, **KW)
    assert sorted(p.name for p in out.iterdir()) == [ef.STATE_NAME, "shard-000000.tar"]

    res = ef.extract_features(src, out, **KW)
    assert (res.shards_written, res.shards_skipped) == (1, 1)
    assert (out / "shard-000000.tar").stat().st_mtime_ns == first
    np.testing.assert_array_equal(_embeddings(out), _embeddings(dst))
    assert not (out / ef.STATE_NAME).exists()


def test_in_place_update_and_cut_short_swap(src, dst, tmp_path, monkeypatch):
    folder = tmp_path / "inplace"
    shutil.copytree(src, folder)
    original = common.read_manifest(folder)
    with pytest.raises(KeyboardInterrupt):
        ef.extract_features(folder, None, **KW, on_shard=_stop_after_first)
    assert common.read_manifest(folder, verify_checksums=True) == original  # still the old one
    res = ef.extract_features(folder, **KW)
    assert (res.shards_written, res.shards_skipped) == (1, 1)
    np.testing.assert_array_equal(_embeddings(folder), _embeddings(dst))
    assert not (folder / ef.STAGING_NAME).exists()

    # Replace them by float16 features, dying half-way through the final swap.
    real_replace = os.replace

    def crash_on_second_shard(a, b):
        if str(a).endswith(f"{ef.STAGING_NAME}/shard-000001.tar"):
            raise KeyboardInterrupt
        real_replace(a, b)

    with monkeypatch.context() as m:
        m.setattr(ef.os, "replace", crash_on_second_shard)
        with pytest.raises(KeyboardInterrupt):
            ef.extract_features(folder, **KW, dtype="float16")
    with pytest.raises(common.DatasetNotFoundError):  # nothing looks complete
        common.read_manifest(folder)
    path = synthetic.ensure_synthetic_dataset(  # finishes the swap, then reuses everything
        folder, num_samples=12, resolution=SIZE, shard_size=6,
        teacher={**KW, "dtype": "float16"},
    )  # fmt: skip
    emb = _embeddings(path)
    assert emb.dtype == np.float16 and common.read_manifest(path)["teacher"]["dtype"] == "float16"
    np.testing.assert_allclose(emb.astype(np.float32), _embeddings(dst), rtol=2e-3, atol=2e-3)
    dm = GP3DDataModule(
        str(path), batch_size=4, num_workers=0, shuffle_buffer=4, epoch_images=8,
        use_embeddings=True,
    )  # fmt: skip
    assert next(iter(dm.train_dataloader())).embedding.dtype == torch.float32


def test_synthetic_cli_with_teacher(tmp_path, capsys):
    args = ["--out", str(tmp_path / "syn"), "--num-samples", "4", "--resolution", str(SIZE)]
    args += ["--teacher", MODEL, "--teacher-random-init", "--teacher-input-size", str(SIZE)]
    assert synthetic.main(args) == 0
    manifest = common.read_manifest(tmp_path / "syn", verify_checksums=True)
    assert manifest["embedding_dim"] == DIM and manifest["teacher"]["model"] == MODEL
    mtime = (tmp_path / "syn" / "shard-000000.tar").stat().st_mtime_ns
    assert synthetic.main(args) == 0
    assert (tmp_path / "syn" / "shard-000000.tar").stat().st_mtime_ns == mtime
    with pytest.raises(SystemExit):
        synthetic.main(args[:-3])  # a teacher needs an explicit weights choice


def test_clear_errors_and_cli(src, tmp_path, capsys):
    with pytest.raises(common.DatasetNotFoundError, match="does not exist"):
        ef.extract_features(tmp_path / "missing", tmp_path / "out", **KW)
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "shard-000000.tar").write_bytes(b"")
    with pytest.raises(common.DatasetNotFoundError, match="no manifest.json"):
        ef.extract_features(tmp_path / "unfinished", **KW)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        ef.extract_features(src, tmp_path / "busy", **KW)

    assert ef.main([str(tmp_path / "missing"), "--random-init"]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        ef.main(["--help"])
    assert info.value.code == 0 and "--random-init" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ef.main([str(src)])  # the weights source must be chosen explicitly
    out = tmp_path / "cli"
    cli = [str(src), "--out", str(out), "--model", MODEL, "--random-init", "--input-size", "32"]
    assert ef.main(cli) == 0
    assert "2 shards written" in capsys.readouterr().out
