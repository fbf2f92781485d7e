"""Shards -> GP3DDataModule -> Batch: schema, epoch length, flips, errors, labels, Lightning."""

import io
import pickle
import tarfile
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from data_prep import common
from data_prep.synthetic import dataset as synthetic
from gp3d.data import GP3DDataModule
from gp3d.data.shards import (
    Decode,
    DecodeRaw,
    NextPass,
    RandomXFlip,
    Shuffle,
    SplitByNode,
    StreamPosition,
    TakeWorkerShare,
    decode_depth,
    decode_image,
    make_pipeline,
)
from gp3d.data.tar_samples import (
    LoadSamples,
    SampleRef,
    shard_samples,
    tar_sample_refs,
    tar_samples,
)
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


def test_decoder_scales_16bit_and_composites_alpha_images():
    """PIL's convert("RGB") clips 16-bit grey at 255 (a white image); the loader scales it."""
    grey16 = np.full((RES, RES), 32768, np.uint16)
    rgba = np.zeros((RES, RES, 4), np.uint8)  # fully transparent: white, as write_shards does
    for image, want in ((grey16, 128), (rgba, 255)):
        sample = {
            "__key__": "k",
            "png": common.encode_png(image),
            "depth.png": common.encode_png(grey16),
        }
        assert (DecodeRaw(RES, use_embeddings=False)(sample)["image"] == want).all()


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


# -- the tar reader and the batch-level decoding against webdataset's generic path -------------


def _tar(path, members, fmt=tarfile.USTAR_FORMAT, compress=""):
    """A tar of ``(name, bytes | None)`` members (None: a directory), in order."""
    with tarfile.open(path, "w:" + compress, format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return str(path)


def _wds_samples(urls):
    return list(wds.tarfile_to_samples()(iter([{"url": u} for u in urls])))


def _our_samples(urls):
    return list(tar_samples(iter([{"url": u} for u in urls])))


class _ShortReads:
    """Only ``read``, returning at most 100 bytes a call (like a pipe)."""

    def __init__(self, f):
        self.f = f

    def read(self, n=-1):
        return self.f.read(100 if n < 0 else min(n, 100))


def test_tar_reader_yields_what_webdataset_yields(tmp_path, synth):
    odd = [  # optional keys missing in some samples, odd names webdataset skips or keeps
        ("0001.png", b"a"), ("0001.depth.png", b"b"), ("0001.cls", b"3"),
        ("0002.png", b"c"), ("0002.depth.png", b""),  # no cls, empty member
        ("dir", None), ("dir/0003.PNG", b"d"), ("dir/0003.Depth.PNG", b"e"),
        ("__meta__", b"skip"), ("__x__/0004.png", b"skip"), ("noext", b"skip"),
        ("0005.emb.npy", b"f"), ("0005.meta.json", b"{}"),
        ("x" * 120 + "/0006.png", b"g"),  # long path: ustar prefix field
    ]  # fmt: skip
    long = ("k" * 150 + ".png", b"h")  # too long for ustar: GNU 'L' / pax 'path' headers
    urls = [
        _tar(tmp_path / "odd.tar", odd),
        _tar(tmp_path / "gnu.tar", odd + [long], fmt=tarfile.GNU_FORMAT),
        _tar(tmp_path / "pax.tar", [long, ("0007.png", b"i" * 1000)], fmt=tarfile.PAX_FORMAT),
        _tar(tmp_path / "gz.tar", odd, compress="gz"),
        _tar(tmp_path / "ends_with_0002.tar", [("0002.png", b"c")]),
        _tar(tmp_path / "starts_with_0002.tar", [("0002.cls", b"1")]),
        *common.shard_paths(synth, common.read_manifest(synth)),
    ]
    ours = _our_samples(urls)
    assert ours == _wds_samples(urls)
    refs = list(tar_sample_refs(iter([{"url": u} for u in urls])))  # positional reads
    kinds = {r["__url__"]: type(r) for r in refs}
    assert kinds[urls[0]] is SampleRef and kinds[urls[3]] is dict  # gzip: read as a stream
    assert all(isinstance(v, tuple) for k, v in refs[0].items() if not k.startswith("__"))
    assert list(LoadSamples(max_open=2)(iter(refs[::-1]))) == ours[::-1]
    assert {"0001", "0002", "dir/0003"} <= {s["__key__"] for s in ours}
    assert [s for s in ours if s["__url__"] in urls[4:6]] == [  # never merged across shards
        {"__key__": "0002", "__url__": urls[4], "png": b"c"},
        {"__key__": "0002", "__url__": urls[5], "cls": b"1"},
    ]
    for url in urls[:4]:  # a pipe-like stream with short reads (and no peek) reads the same
        with open(url, "rb") as f:
            assert list(shard_samples(_ShortReads(f), url)) == _wds_samples([url])
    with pytest.raises(common.DatasetFormatError, match="appears twice"):
        _our_samples([_tar(tmp_path / "dup.tar", [("a.png", b"1"), ("a.PNG", b"2")])])


def _our_loaded_refs(urls):
    return list(LoadSamples()(tar_sample_refs(iter([{"url": u} for u in urls]))))


@pytest.mark.parametrize("read", [_our_samples, _our_loaded_refs], ids=["stream", "refs"])
def test_truncated_or_corrupt_shard_names_it_and_the_fix(tmp_path, synth, read):
    shard = common.shard_paths(synth, common.read_manifest(synth))[0]
    data = Path(shard).read_bytes()
    with tarfile.open(shard) as tar:
        first = tar.getmembers()[0]
    boundary = first.offset_data + 512 * ((first.size + 511) // 512)  # the 2nd header
    cases = {
        "mid_member": (data[: first.offset_data + 5], "truncated at byte"),
        "at_boundary": (data[:boundary], "without the end-of-archive block"),
        "mid_header": (data[: boundary + 100], "truncated header"),
        "garbage": (b"not a tar file at all" * 100, "bad tar header at byte 0"),
        "flipped_header_byte": (data[:5] + b"Z" + data[6:], "checksum mismatch"),
    }
    for name, (content, what) in cases.items():
        path = tmp_path / f"{name}.tar"
        path.write_bytes(content)
        with pytest.raises(common.DatasetFormatError, match=what) as err:
            read([str(path)])
        assert str(path) in str(err.value) and "write_shards" in str(err.value)
        assert "data_prep.validate" in str(err.value)
    with pytest.raises(common.DatasetFormatError, match="does not exist"):
        read([str(tmp_path / "gone.tar")])
    changed = tmp_path / "changed.tar"
    changed.write_bytes(data)
    refs = tar_sample_refs(iter([{"url": str(changed)}]))
    first_ref = next(refs)
    changed.write_bytes(data[:600])  # cut after the refs were taken
    with pytest.raises(common.DatasetFormatError, match=f"{changed} changed while it was read"):
        list(LoadSamples()(iter([first_ref])))


class _TensorXFlip(RandomXFlip):
    """The former tensor flip: same RNG stream, flips normalised ``[C, H, W]`` tensors."""

    def __call__(self, src):
        rng = self._rng()
        for s in src:
            if rng.random() < self.p:
                s = {**s, "image": s["image"].flip(-1), "depth": s["depth"].flip(-1)}
            yield s


def _tensor_collate(samples):
    emb = [s["embedding"] for s in samples if "embedding" in s]
    return Batch(
        image=torch.stack([s["image"] for s in samples]),
        depth=torch.stack([s["depth"] for s in samples]),
        label=torch.tensor([s["label"] for s in samples], dtype=torch.int64),
        embedding=torch.stack(emb) if emb else None,
    )


def test_pipeline_matches_the_webdataset_per_sample_reference(tmp_path):
    """Same samples, order, flips and bit-identical values as webdataset's tar expander +
    per-sample decoding / flipping / stacking (the pipeline before batch-level decoding)."""
    samples = [_asymmetric_sample(i) for i in range(12)]
    for s in samples[::3]:  # 8-bit depth and a JPEG image in the mix
        s["depth.png"] = common.encode_png(np.full((RES, RES), 100 + len(s["__key__"]), np.uint8))
    path = _write_dataset(tmp_path / "d", samples, embedding_dim=4)
    urls = common.shard_paths(path, common.read_manifest(path))
    kw = dict(resolution=RES, per_device_batch=4, num_batches=9, shuffle_buffer=5, seed=3,
              use_embeddings=True)  # fmt: skip
    ours = list(make_pipeline(urls, **kw))
    shards = wds.ResampledShards(urls, seed=3, deterministic=True, worker_seed=lambda: 0)
    pos = StreamPosition()
    reference = wds.DataPipeline(
        shards, NextPass(pos), SplitByNode(0, 1), wds.split_by_worker, wds.tarfile_to_samples(),
        Shuffle(5, 3, 0, pos), wds.map(Decode(RES, True)), _TensorXFlip(0.5, 3, 0, pos),
        wds.batched(4, collation_fn=_tensor_collate, partial=False), TakeWorkerShare(9, pos),
    )  # fmt: skip
    expected = list(reference)
    assert len(ours) == len(expected) == 9
    flips = 0
    for a, b in zip(ours, expected):
        for f in ("image", "depth", "label", "embedding"):
            x, y = getattr(a, f), getattr(b, f)
            assert x.dtype == y.dtype and torch.equal(x, y) and x.is_contiguous(), f
        flips += int((a.image[:, 0, 0, 0] > a.image[:, 0, 0, -1]).sum())
    assert 0 < flips < 36


def test_decoders_match_the_spec_formulas_bit_for_bit():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (RES, RES + 3, 3), dtype=np.uint8)
    raw = rng.integers(0, 65536, (RES, RES + 3), dtype=np.uint16)
    raw8 = rng.integers(0, 256, (RES, RES + 3), dtype=np.uint8)
    image = decode_image(common.encode_png(rgb))
    assert image.is_contiguous() and torch.equal(
        image,
        torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1.0,  # spec 7.3
    )
    for png, expected in ((raw, raw.astype(np.float32)), (raw8, raw8.astype(np.float32) * 256)):
        depth = decode_depth(common.encode_png(png))
        assert torch.equal(depth, torch.from_numpy(expected)[None] / 65536.0 * 2.0 - 1.0)


def _stream(synth, nimg: int, epochs: int, num_workers: int) -> list[torch.Tensor]:
    """The images of ``epochs`` passes of a loader made after ``nimg`` images (a resume)."""
    from types import SimpleNamespace

    dm = GP3DDataModule(
        str(synth),
        batch_size=4,
        num_workers=num_workers,
        epoch_images=12,
        seed=3,
        shuffle_buffer=8,
    )
    # What Lightning shows the datamodule after restoring a checkpoint.
    module = SimpleNamespace(nimg=torch.tensor(nimg))
    dm.trainer = SimpleNamespace(lightning_module=module, global_rank=0, world_size=1)
    loader = dm.train_dataloader()
    return [b.image for _ in range(epochs) for b in loader]  # one iter() per epoch, as Lightning


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumed_stream_continues_exactly_where_it_stopped(synth, num_workers):
    """3 batches an epoch; resumed mid-epoch, at an epoch boundary and in a later epoch, the
    stream yields exactly the uninterrupted stream's remaining batches: none repeated or
    skipped, same shards, shuffles and flips (and the first, shorter pass ends the epoch)."""
    full = _stream(synth, 0, 3, num_workers)
    assert len(full) == 9
    for done in (1, 3, 5):
        resumed = _stream(synth, done * 4, 3 - done // 3, num_workers)
        assert len(resumed) == 9 - done
        assert all(torch.equal(a, b) for a, b in zip(resumed, full[done:], strict=True)), done


def test_stream_position_counts_whole_passes_and_batches():
    from gp3d.data.datamodule import stream_position

    assert stream_position(0, 4, 3) == (0, 0)
    assert stream_position(20, 4, 3) == (1, 2)  # 5 batches: one pass of 3, then 2
    assert stream_position(24, 4, 3) == (2, 0)


def test_pin_memory_follows_the_trainer_device_unless_set(synth):
    """Default: pinned batches only when training on CUDA (no page-locking on CPU runs)."""
    from types import SimpleNamespace

    dm = GP3DDataModule(str(synth), batch_size=8, epoch_images=8)
    dm.setup("fit")
    assert dm.train_dataloader().pin_memory is False  # no trainer attached
    on = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
    dm.trainer = on
    assert dm.train_dataloader().pin_memory is True
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    assert dm.train_dataloader().pin_memory is False
    forced = GP3DDataModule(str(synth), batch_size=8, epoch_images=8, pin_memory=False)
    forced.setup("fit")
    forced.trainer = on
    assert forced.train_dataloader().pin_memory is False
