"""Shards -> GP3DDataModule -> Batch: schema, epoch length, flips, errors, labels, Lightning."""

import io
import pickle
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from data_prep import common, synthetic
from gp3d.data import GP3DDataModule
from gp3d.data.shards import Decode
from gp3d.types import Batch

RES = 16


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synth"
    synthetic.generate_dataset(path, num_samples=40, resolution=RES, seed=0, shard_size=10)
    return path


def _write_dataset(path, samples: list[dict], embedding_dim=None, class_counts=None):
    """A hand-made dataset in the common shard format (one shard)."""
    path.mkdir(parents=True, exist_ok=True)
    with common.AtomicShardWriter(path / "shard-000000.tar") as w:
        for s in samples:
            w.write(s)
    keys = [k for k in samples[0] if k != "__key__"]
    counts = class_counts or [len(samples)]
    common.write_manifest(
        path,
        {
            "format": {"name": common.FORMAT_NAME, "version": common.FORMAT_VERSION},
            "generator": {"name": "test", "version": "0", "params": {}},
            "seed": 0,
            "num_samples": len(samples),
            "resolution": RES,
            "num_classes": len(counts),
            "class_names": [str(i) for i in range(len(counts))],
            "class_counts": counts,
            "keys": keys,
            "shards": [w.shard_info],
            "depth": common.DEPTH_DESCRIPTION,
            "embedding_dim": embedding_dim,
        },  # fmt: skip
    )
    return path


def _batches(dm: GP3DDataModule) -> list[Batch]:
    dm.setup("fit")
    return list(dm.train_dataloader())


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batch_schema_and_epoch_length(synth, num_workers):
    dm = GP3DDataModule(str(synth), batch_size=8, num_workers=num_workers, epoch_images=50)
    assert (dm.num_classes, dm.resolution, dm.embedding_dim) == (10, RES, None)
    batches = _batches(dm)
    assert len(batches) == 7 == len(dm.train_dataloader())  # ceil(50 / 8) steps
    for b in batches:
        assert isinstance(b, Batch) and b.embedding is None
        assert b.image.shape == (8, 3, RES, RES) and b.image.dtype == torch.float32
        assert b.depth.shape == (8, 1, RES, RES) and b.depth.dtype == torch.float32
        assert b.label.shape == (8,) and b.label.dtype == torch.int64
        assert b.image.min() >= -1 and b.image.max() <= 1
        # raw / 65536 * 2 - 1 with the LeReS max of 60000 -> the farthest pixel reads ~0.831
        assert b.depth.min() >= -1 and b.depth.amax(dim=(1, 2, 3)).allclose(
            torch.tensor(0.8311), atol=1e-3
        )
        assert b.label.min() >= 0 and b.label.max() < 10


def test_ranks_split_the_global_batch_and_the_stream(synth):
    keys = []
    for rank in (0, 1):
        dm = GP3DDataModule(str(synth), batch_size=8, num_workers=0, epoch_images=32, xflip=False)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)  # what Lightning provides
        batches = _batches(dm)
        assert len(batches) == 4 and all(b.image.shape[0] == 4 for b in batches)
        keys.append(torch.cat([b.image for b in batches]))
    assert not torch.equal(keys[0], keys[1])
    dm = GP3DDataModule(str(synth), batch_size=6, num_workers=0)
    dm.trainer = SimpleNamespace(global_rank=0, world_size=4)
    with pytest.raises(ValueError, match="divisible by the world size"):
        dm.setup("fit")


def test_pipeline_pickles_for_spawned_workers(synth):
    # spawn / forkserver DataLoader workers (ddp_spawn, Python >= 3.14 default) pickle the dataset
    dm = GP3DDataModule(str(synth), batch_size=4, num_workers=0, epoch_images=8)
    dm.setup("fit")
    dataset = pickle.loads(pickle.dumps(dm.train_dataloader().dataset))
    assert len(dataset) == 2 and len(list(dataset)) == 2


def _asymmetric_sample(i: int) -> dict:
    ramp = np.tile(np.arange(RES, dtype=np.float64), (RES, 1))  # increases left -> right
    image = np.stack([ramp * 15, ramp * 0 + 7 * i, 255 - ramp * 15], -1).astype(np.uint8)
    return {
        "__key__": f"{i:04d}",
        "png": common.encode_png(image),
        "depth.png": common.encode_relative_depth(1 + ramp),
        "cls": "0",
        "emb.npy": common.encode_npy(np.arange(4, dtype=np.float16) + i),
    }


def test_xflip_flips_image_and_depth_together_not_embedding(tmp_path):
    path = _write_dataset(
        tmp_path / "asym", [_asymmetric_sample(i) for i in range(8)], embedding_dim=4
    )
    dm = GP3DDataModule(
        str(path), batch_size=8, num_workers=0, epoch_images=64, use_embeddings=True
    )
    assert dm.embedding_dim == 4
    flips = []
    for b in _batches(dm):
        assert b.embedding.dtype == torch.float32 and b.embedding.shape == (8, 4)
        for img, dep, emb in zip(b.image, b.depth, b.embedding):
            i = round(float(emb[0]))  # the embedding identifies the sample and is never flipped
            assert torch.equal(emb, torch.arange(4.0) + i)
            assert (img[1] == img[1, 0, 0]).all() and round(
                (img[1, 0, 0].item() + 1) * 127.5
            ) == 7 * i
            image_flipped = bool(img[0, 0, 0] > img[0, 0, -1])  # red ramp reversed
            depth_flipped = bool(dep[0, 0, 0] > dep[0, 0, -1])
            assert image_flipped == depth_flipped
            flips.append(image_flipped)
    assert 0 < sum(flips) < len(flips)  # both orientations occur
    plain = GP3DDataModule(str(path), batch_size=8, num_workers=0, epoch_images=16, xflip=False)
    assert not any(bool(img[0, 0, 0] > img[0, 0, -1]) for b in _batches(plain) for img in b.image)


def test_decoder_accepts_jpg_and_8bit_depth():
    buf = io.BytesIO()
    Image.fromarray(np.full((RES, RES, 3), 200, np.uint8)).save(buf, format="JPEG")
    depth8 = common.encode_png(np.full((RES, RES), 128, np.uint8))
    out = Decode(RES, use_embeddings=False)(
        {"__key__": "k", "jpg": buf.getvalue(), "depth.png": depth8}
    )
    assert out["image"].shape == (3, RES, RES) and out["label"] == 0
    assert out["depth"].unique().tolist() == [128 * 256 / 65536 * 2 - 1]  # 8-bit: x 256


def test_clear_errors(tmp_path, synth):
    missing = tmp_path / "nope"
    with pytest.raises(
        common.DatasetNotFoundError, match=rf"{missing}.*does not exist.*data_prep\.synthetic --out"
    ):
        GP3DDataModule(str(missing), batch_size=4).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(common.DatasetNotFoundError, match="is empty.*make data"):
        GP3DDataModule(str(tmp_path / "empty"), batch_size=4).num_classes
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "shard-000000.tar").write_bytes(b"")
    with pytest.raises(common.DatasetNotFoundError, match="not a finished dataset"):
        GP3DDataModule(str(unfinished), batch_size=4).setup("fit")
    with pytest.raises(common.DatasetFormatError, match="resolution 16 but the config asks for 32"):
        GP3DDataModule(str(synth), batch_size=4, resolution=32).setup("fit")
    with pytest.raises(common.DatasetFormatError, match=r"no 'emb.npy'.*use_embeddings=false"):
        GP3DDataModule(str(synth), batch_size=4, use_embeddings=True).setup("fit")


def test_reader_ignores_leftover_temp_files(tmp_path):
    path = _write_dataset(
        tmp_path / "d", [_asymmetric_sample(i) for i in range(4)], embedding_dim=4
    )
    (path / ".shard-000001.tar.tmp-12345").write_bytes(b"partial garbage")
    dm = GP3DDataModule(str(path), batch_size=4, num_workers=0, epoch_images=8)
    assert len(_batches(dm)) == 2


def test_sample_labels_follow_the_class_counts(tmp_path):
    samples = [_asymmetric_sample(i) for i in range(4)]
    path = _write_dataset(tmp_path / "d", samples, embedding_dim=4, class_counts=[0, 1, 0, 3])
    dm = GP3DDataModule(str(path), batch_size=4)
    labels = dm.sample_labels(4000, torch.Generator().manual_seed(0))
    assert labels.dtype == torch.int64 and set(labels.tolist()) == {1, 3}
    assert (labels == 3).float().mean().item() == pytest.approx(0.75, abs=0.03)


class _CountSteps(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = 0

    def training_step(self, batch: Batch, batch_idx: int):
        assert isinstance(batch, Batch)
        self.seen += batch.image.shape[0]
        return (self.w * batch.image.mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_fit_runs_one_epoch_in_images(synth, tmp_path):
    dm = GP3DDataModule(str(synth), batch_size=4, num_workers=0, epoch_images=20)
    model = _CountSteps()
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 10 and model.seen == 40


class _RecordRanks(_CountSteps):
    def __init__(self, out):
        super().__init__()
        self.out = str(out)

    def on_train_end(self):
        dm = self.trainer.datamodule
        mine = torch.tensor(
            [self.seen, self.trainer.global_step, dm.rank, dm.per_device_batch_size]
        )
        gathered = self.all_gather(mine)  # [world, 4]
        if self.trainer.is_global_zero:
            torch.save(gathered, self.out)


@pytest.mark.slow
def test_ddp_two_cpu_processes(synth, tmp_path):
    """Real DDP (gloo, 2 spawned CPU processes, 1 loader worker each): ranks split the batch."""
    dm = GP3DDataModule(str(synth), batch_size=4, num_workers=1, epoch_images=16)
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(_RecordRanks(tmp_path / "ranks.pt"), datamodule=dm)
    # per rank: 8 images seen in 4 steps, its rank, per-device batch 2
    assert torch.load(tmp_path / "ranks.pt").tolist() == [[8, 4, 0, 2], [8, 4, 1, 2]]
