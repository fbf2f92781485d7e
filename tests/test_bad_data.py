"""Bad data never costs a run (issue 15 item 5): corrupt samples are skipped, counted by reason and
shard, logged, and too many of them stop training with an error naming the worst shards."""

import csv
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from data_prep import common
from gp3d.data import GP3DDataModule
from gp3d.data.bad_samples import REASONS, SkipEvent, SkipTally, TooMuchBadData, too_many_bad
from gp3d.data.shards import PinnableBatch, make_pipeline
from gp3d.data.tar_samples import tar_sample_refs

RES = 16
EMB = 4


def _good(i: int) -> dict:
    image = np.full((RES, RES, 3), i, np.uint8)
    return {
        "__key__": f"good_{i:04d}",
        "png": common.encode_png(image),
        "depth.png": common.encode_relative_depth(np.ones((RES, RES)) + i),
        "cls": "0",
        "emb.npy": common.encode_npy(np.full(EMB, i, np.float32)),
    }


def _bad_samples() -> dict[str, dict]:
    """One deliberately broken sample per reason (key -> sample)."""
    nan = _good(200) | {"emb.npy": common.encode_npy(np.array([0, np.nan, 0, 0], np.float32))}
    broken = {
        "image": _good(201) | {"png": b"\x89PNG\r\n\x1a\n but not really"},
        "depth": _good(202) | {"depth.png": _good(0)["depth.png"][:40]},  # truncated PNG
        "shape": _good(203) | {"png": common.encode_png(np.zeros((RES, RES // 2, 3), np.uint8))},
        "missing": {k: v for k, v in _good(204).items() if k != "depth.png"},
        "embedding": nan,
        "label": _good(205) | {"cls": "3"},  # the dataset has one class
    }
    for reason, sample in broken.items():
        sample["__key__"] = f"bad_{reason}"
    return broken


def _write(path, samples: list[dict], shard_size: int = 100):
    path.mkdir(parents=True)
    infos = []
    for s in range(0, len(samples), shard_size):
        with common.AtomicShardWriter(path / f"shard-{s // shard_size:06d}.tar") as w:
            for sample in samples[s : s + shard_size]:
                w.write(sample)
        infos.append(w.shard_info)
    good = [s for s in samples if s["__key__"].startswith("good")]
    common.write_manifest(
        path,
        {
            "format": {"name": common.FORMAT_NAME, "version": common.FORMAT_VERSION},
            "generator": {"name": "test", "version": "0", "params": {}},
            "seed": 0,
            "num_samples": len(samples),
            "resolution": RES,
            "num_classes": 1,
            "class_names": ["0"],
            "class_counts": [len(good)],
            "keys": list(_good(0))[1:],
            "shards": infos,
            "depth": common.DEPTH_DESCRIPTION,
            "embedding_dim": EMB,
        },  # fmt: skip
    )
    return path


def _mixed(num_good: int = 24) -> list[dict]:
    """Good samples with the broken ones spread between them (all before the last good one)."""
    samples = [_good(i) for i in range(num_good)]
    for j, bad in enumerate(_bad_samples().values()):
        samples.insert(2 + 3 * j, bad)
    return samples


def test_each_kind_of_bad_sample_is_skipped_once_with_its_reason_and_key(tmp_path):
    path = _write(tmp_path / "d", _mixed())
    urls = common.shard_paths(path, common.read_manifest(path))
    batches = list(
        make_pipeline(
            urls,
            resolution=RES,
            per_device_batch=4,
            num_batches=6,
            shuffle_buffer=1,
            xflip=False,
            use_embeddings=True,
            num_classes=1,
            embedding_dim=EMB,
            max_bad_fraction=0.5,
            bad_min_samples=10,
        )  # fmt: skip
    )  # one pass reads the shard once, in order: 24 good samples in 6 batches
    events = [e for b in batches for e in b.skipped]
    assert sorted((e.reason, e.key) for e in events) == sorted(
        (r, f"bad_{r}") for r in _bad_samples()
    )
    assert all(e.url == urls[0] and e.detail for e in events)
    images = torch.cat([b.image for b in batches])
    want = torch.arange(24, dtype=torch.float32) / 127.5 - 1  # the good samples, in order
    assert torch.equal(images[:, 0, 0, 0], want)
    assert all(torch.isfinite(b.embedding).all() for b in batches)


def test_counts_reach_the_main_process_from_two_workers_and_are_logged(tmp_path):
    path = _write(tmp_path / "d", _mixed(), shard_size=10)  # 3 shards, workers read different ones
    dm = GP3DDataModule(
        str(path), batch_size=4, num_workers=2, shuffle_buffer=4, epoch_images=96,
        use_embeddings=True, max_bad_fraction=0.5, bad_min_samples=10,
    )  # fmt: skip
    model = _CountSteps()
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        logger=CSVLogger(tmp_path, name="log", version=0), log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    # 96 good samples from 3 shards drawn with replacement: every reason is met
    assert model.seen == 96 and model.finite
    counts = dm.skips.by_reason
    assert set(counts) == set(_bad_samples()) and dm.skips.good == 96
    shards = common.shard_paths(path, common.read_manifest(path))
    assert set(dm.skips.by_shard) <= set(shards)
    with open(tmp_path / "log" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = [r for r in rows if r.get("data/skipped_image")]
    assert logged, "no data/skipped_* metric was logged"
    last = logged[-1]
    assert all(f"data/skipped_{r}" in last for r in REASONS)
    assert float(last["data/skipped_depth"]) == counts["depth"]
    assert float(last["data/skipped_fraction"]) == pytest.approx(
        dm.skips.bad / (dm.skips.bad + dm.skips.good), rel=0.2
    )  # logged at the last batch that brought events, later good batches lower it


class _CountSteps(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen, self.finite = 0, True

    def training_step(self, batch, batch_idx):
        self.seen += batch.image.shape[0]
        self.finite &= bool(torch.isfinite(batch.embedding).all())
        return self.w * 0.0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_too_much_bad_data_stops_with_the_worst_shards_named(tmp_path, num_workers):
    samples = [_good(i) for i in range(30)]
    bad = _bad_samples()["image"]
    half_bad = [s for i in range(30) for s in (samples[i], bad | {"__key__": f"bad_{i}"})]
    path = _write(tmp_path / "d", samples[:20] + half_bad, shard_size=20)  # shards 1-3: 50% bad
    dm = GP3DDataModule(
        str(path), batch_size=4, num_workers=num_workers, shuffle_buffer=4, epoch_images=400,
        use_embeddings=True, max_bad_fraction=0.1, bad_min_samples=20,
    )  # fmt: skip
    dm.setup("fit")
    with pytest.raises(TooMuchBadData) as err:
        for batch in dm.train_dataloader():
            dm.on_before_batch_transfer(batch, 0)
    msg = str(err.value)
    assert "data.max_bad_fraction=0.1" in msg and "image" in msg and "data_prep.validate" in msg
    worst = msg.split("Worst shards: ")[1]
    assert any(str(path / f"shard-00000{i}.tar") in worst for i in (1, 2, 3))
    assert str(path / "shard-000000.tar") not in worst  # the all-good shard is never blamed


def test_data_that_is_all_bad_stops_instead_of_hanging(tmp_path):
    bad = _bad_samples()["depth"]
    path = _write(tmp_path / "d", [bad | {"__key__": f"bad_{i}"} for i in range(8)])
    dm = GP3DDataModule(str(path), batch_size=4, num_workers=1, epoch_images=8,
                        max_bad_fraction=0.05, bad_min_samples=20)  # fmt: skip
    dm.setup("fit")
    with pytest.raises(TooMuchBadData, match=r"depth 2.*shard-000000\.tar \(2\)"):
        next(iter(dm.train_dataloader()))


def test_main_process_judges_the_sum_over_workers():
    """Each worker under the limit, together over it: the data module stops the run."""
    dm = GP3DDataModule("unused", batch_size=4, max_bad_fraction=0.2, bad_min_samples=10)
    image = torch.zeros(4, 3, RES, RES)

    def batch(*urls):
        events = tuple(SkipEvent("image", u, "k", "bad PNG") for u in urls)
        return PinnableBatch(image, image[:, :1], torch.zeros(4, dtype=torch.long), skipped=events)

    dm.on_before_batch_transfer(batch("a", "a"), 0)  # worker 0: 2 of 6, 2 <= 0.2 * max(6, 10)
    with pytest.raises(TooMuchBadData, match=r"4 of the 12 samples.*Worst shards: a \(2\), b \(2"):
        dm.on_before_batch_transfer(batch("b", "b"), 0)  # worker 1 the same; 4 > 0.2 * 12


def test_corrupt_shard_is_counted_and_reading_goes_on(tmp_path):
    path = _write(tmp_path / "d", [_good(i) for i in range(6)], shard_size=3)
    first, second = common.shard_paths(path, common.read_manifest(path))
    data = Path(first).read_bytes()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(data[: len(data) // 2])
    tally = SkipTally(0.5, 100)
    keys = [s["__key__"] for s in tar_sample_refs([{"url": str(truncated)}, {"url": second}],
                                                  handler=tally.handler)]  # fmt: skip
    assert keys[-3:] == ["good_0003", "good_0004", "good_0005"]  # the next shard is read whole
    assert tally.by_reason == {"shard": 1} and list(tally.by_shard) == [str(truncated)]
    assert "truncated" in tally.pending[0].detail


def test_threshold_rule_and_config_range():
    assert not too_many_bad(5, 10, 0.01, 1000)  # early: up to 10 bad tolerated
    assert too_many_bad(11, 20, 0.01, 1000)
    assert not too_many_bad(30, 5000, 0.01, 1000) and too_many_bad(51, 5000, 0.01, 1000)
    with pytest.raises(ValueError, match=r"max_bad_fraction=1.0 must be in \[0, 1\)"):
        SkipTally(1.0)
