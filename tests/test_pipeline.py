"""The real-data chain end to end on photographs, through each tool's command line, into the
data module composed from the dataset configs (no code change): write_shards -> extract_features
(random tiny teacher) -> validate -> ``data=imagenet`` / ``data=dogs`` batches."""

import pytest
import torch
from hydra.utils import instantiate

from data_prep import common, extract_features, validate, write_shards
from gp3d.data.prepare import prepare_dataset
from gp3d.train import resolve_against_data
from tests.helpers import TINY_MODEL, compose_train
from tests.photo_dataset import make_photo_dataset

RES, TEACHER, DIM = 32, "resnet10t", 512
pytestmark = pytest.mark.filterwarnings("ignore:teacher features come from a random network")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # see conftest.one_thread
    yield


def _prepare(src, dest, extra=()):
    argv = [str(src), "--out", str(dest), "--resolution", str(RES), "--shard-size", "6",
            "--workers", "0", "--quiet", *extra]  # fmt: skip
    assert write_shards.main(argv) == 0
    argv = [
        str(dest),
        "--model",
        TEACHER,
        "--random-init",
        "--input-size",
        "32",
        "--batch-size",
        "8",
    ]
    assert extract_features.main(argv) == 0
    assert validate.main([str(dest), "--full"]) == 0


def _datamodule(data: str, path, tmp_path, overrides=()):
    cfg = compose_train(
        [f"data={data}", "experiment=3dgp", f"data.path={path}", f"data.resolution={RES}",
         "data.batch_size=4", "data.num_workers=0", "data.epoch_images=8", *TINY_MODEL,
         *overrides],
        tmp_path / "run", tmp_path / "data",
    )  # fmt: skip
    dm = instantiate(prepare_dataset(cfg.data))
    resolve_against_data(cfg, dm)
    dm.setup("fit")
    return cfg, dm


def test_imagenet_style_folder_to_training_batches(tmp_path):
    photos = make_photo_dataset(tmp_path / "imagenet", per_class=2, train_subdir=True)
    dest = tmp_path / "imagenet_32"
    _prepare(photos.src, dest)
    manifest = common.read_manifest(dest, verify_checksums=True)
    assert manifest["embedding_dim"] == DIM and manifest["num_samples"] == photos.num_kept
    assert manifest["skipped"] == dict(photos.skips)
    assert "meta.json" in manifest["keys"] and manifest["teacher"]["model"] == TEACHER

    cfg, dm = _datamodule("imagenet", dest, tmp_path)
    assert (cfg.model.c_dim, cfg.model.kd_dim) == (5, DIM)  # classes and KD from the manifest
    batches = list(dm.train_dataloader())
    assert len(batches) == 2
    for b in batches:
        assert b.image.shape == (4, 3, RES, RES) and b.depth.shape == (4, 1, RES, RES)
        assert b.embedding.shape == (4, DIM) and torch.isfinite(b.embedding).all()
        assert b.label.dtype == torch.int64 and set(b.label.tolist()) <= set(range(5))
        assert b.image.min() >= -1 and b.image.max() <= 1
        assert b.depth.min() >= -1 and b.depth.max() < 1 and b.depth.std() > 0
    # re-running the chain reuses everything (the in-place features survive)
    before = (dest / common.MANIFEST_NAME).read_bytes()
    _prepare(photos.src, dest)
    assert (dest / common.MANIFEST_NAME).read_bytes() == before


def test_release_style_flat_folder_is_unconditional(tmp_path):
    photos = make_photo_dataset(tmp_path / "src", per_class=2, odd_files=False)
    flat = tmp_path / "dogs"  # SDIP-style: one folder, <stem>_depth.png beside each image
    flat.mkdir()
    for p in sorted(photos.image_root.rglob("*.*")):
        (flat / p.name).write_bytes(p.read_bytes())
    dest = tmp_path / "dogs_32"
    _prepare(flat, dest)
    cfg, dm = _datamodule("dogs", dest, tmp_path)
    assert dm.num_classes == 1 and cfg.model.c_dim == 0
    batch = next(iter(dm.train_dataloader()))
    assert batch.label.tolist() == [0, 0, 0, 0] and batch.embedding.shape == (4, DIM)
