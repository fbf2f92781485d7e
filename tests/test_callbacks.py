from types import SimpleNamespace

import torch

from gp3d.callbacks.interval import crossed_kimg


def test_crossed_kimg_fires_once_per_interval_across_ranks():
    trainer = SimpleNamespace(world_size=2)
    batch = SimpleNamespace(image=torch.zeros(16, 3, 4, 4))  # 16 per rank -> 32 images per step
    fired = []
    for step in range(1, 200):
        module = SimpleNamespace(nimg=torch.tensor(step * 32))
        if crossed_kimg(trainer, module, batch, every_kimg=1.0):
            fired.append(step * 32)
    # the first step whose nimg reaches k * 1000, for k = 1..6 (nimg only takes multiples of 32)
    assert (
        fired
        == [-(-k * 1000 // 32) * 32 for k in range(1, 7)]
        == [1024, 2016, 3008, 4000, 5024, 6016]
    )
    module = SimpleNamespace(nimg=torch.tensor(1024))
    assert not crossed_kimg(trainer, module, batch, every_kimg=0)  # 0 = never


class _Recorder:
    """A KimgIntervalCallback that records its firings."""

    def __new__(cls, **attrs):
        from gp3d.callbacks.interval import KimgIntervalCallback

        class Rec(KimgIntervalCallback):
            def __init__(self) -> None:
                self.every_kimg, self.tags = 1.0, []
                for k, v in attrs.items():
                    setattr(self, k, v)

            def fire(self, trainer, pl_module, tag: str) -> None:
                self.tags.append(tag)

        return Rec()


def _drive(cb, nimgs, fast_dev_run=False):
    trainer = SimpleNamespace(world_size=1, fast_dev_run=fast_dev_run, sanity_checking=False)
    batch = SimpleNamespace(image=torch.zeros(500, 3, 4, 4))
    for n in nimgs:
        module = SimpleNamespace(nimg=torch.tensor(n))
        cb.on_train_batch_end(trainer, module, None, batch, 0)
    cb.on_train_end(trainer, module)
    return cb.tags


def test_interval_callback_fires_on_crossings_and_at_the_end():
    assert _drive(_Recorder(), [500, 1000, 1500, 2000, 2500]) == [
        "kimg000001",
        "kimg000002",
        "kimg000002_final",
    ]
    # the same weights were just evaluated: metrics skip the final firing
    assert _drive(_Recorder(skip_final_if_fired=True), [500, 1000, 1500, 2000]) == [
        "kimg000001",
        "kimg000002",
    ]
    assert _drive(_Recorder(skip_final_if_fired=True), [500, 1000, 1500]) == [
        "kimg000001",
        "kimg000001_final",
    ]
    assert _drive(_Recorder(at_train_end=False), [500, 1000, 1500]) == ["kimg000001"]
    assert _drive(_Recorder(), [500, 1000]) == ["kimg000001"]  # the default: no repeat
    assert _drive(_Recorder(skip_final_if_fired=False), [500, 1000]) == [
        "kimg000001",
        "kimg000001_final",
    ]


def test_interval_callback_under_fast_dev_run_fires_only_the_final_when_allowed():
    assert _drive(_Recorder(), [500, 1000], fast_dev_run=True) == ["kimg000001_final"]
    assert _drive(_Recorder(final_in_fast_dev_run=False), [500, 1000], fast_dev_run=True) == []


# --- VideoLogger ------------------------------------------------------------------------------


class WandbLogger:  # the callbacks recognise W&B loggers by class name
    def __init__(self) -> None:
        self.logged: list[dict] = []
        self.experiment = SimpleNamespace(log=self.logged.append)


def _fake_run(tmp_path, G, nimg: int):
    wb = WandbLogger()
    trainer = SimpleNamespace(
        default_root_dir=str(tmp_path), loggers=[wb], global_step=7, world_size=1
    )
    module = SimpleNamespace(G_ema=G, nimg=torch.tensor(nimg))
    return trainer, module, wb


def test_video_logger_writes_and_logs_turntables_every_k_kimg(tmp_path):
    import imageio.v3 as iio
    import wandb

    from gp3d.callbacks.video import VideoLogger
    from tests.tiny_generator import tiny_generator

    G = tiny_generator(tmp_path, c_dim=3).G.train()
    cb = VideoLogger(
        every_kimg=4,
        seeds=[0, 1, 2],
        classes=[2, 0, 1],
        num_frames=5,
        resolution=12,
        camera_samples=16,
    )
    batch = SimpleNamespace(image=torch.zeros(4, 3, 8, 8))
    logged = []
    for nimg in (2000, 3000, 4000, 5000, 8000, 9000):  # every 4 kimg: crossed at 4000 and 8000
        trainer, module, wb = _fake_run(tmp_path, G, nimg)
        batch.image = torch.zeros(1000 if nimg > 2000 else 2000, 3, 8, 8)
        cb.on_train_batch_end(trainer, module, None, batch, 0)
        logged += wb.logged
    cb.on_train_end(trainer, module)
    names = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert names == ["kimg000004.mp4", "kimg000008.mp4", "kimg000009_final.mp4"]
    video = iio.imread(cb.last_path)
    # 3 seeds -> a 2 x 2 grid of (12 x 24) cells (RGB | depth), 2 px padding
    assert video.shape == (5, 2 * 14 + 2, 2 * 26 + 2, 3)
    assert G.training  # restored after rendering
    assert len(logged) == 2 and len(wb.logged) == 1  # the final video, in the last run
    entry = logged[0]
    assert isinstance(entry["samples/video"], wandb.Video) and entry["trainer/global_step"] == 7
    assert entry["progress/kimg"] == 4.0
    # fixed seeds and classes: the same frames every time the callback fires
    a, b = cb.render(G.eval()), cb.render(G)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    other = VideoLogger(
        seeds=[0, 1, 2], classes=[0, 0, 0], num_frames=5, resolution=12, camera_samples=16
    )
    assert not torch.equal(other.render(G)[0], a[0])  # classes matter


def test_video_logger_rejects_bad_settings(tmp_path):
    import pytest

    from gp3d.callbacks.video import VideoLogger

    with pytest.raises(ValueError, match="2 classes for 3 seeds"):
        VideoLogger(seeds=[0, 1, 2], classes=[0, 1])
    with pytest.raises(ValueError, match="mode="):
        VideoLogger(mode="normals")
    with pytest.raises(ValueError, match=r"classes \[5\] are out of range"):
        VideoLogger(seeds=[0], classes=[5]).labels(3)
    assert VideoLogger(seeds=[0, 1, 2, 3]).labels(3) == [0, 1, 2, 0]
    assert VideoLogger(seeds=[0, 1], classes=4).labels(5) == [4, 4]
    assert VideoLogger(seeds=[0, 1]).labels(0) is None


def test_interval_callbacks_keep_their_docstrings_and_fast_dev_run_rules():
    from gp3d.callbacks.fid import FIDCallback
    from gp3d.callbacks.nfs import NonFlatnessScore
    from gp3d.callbacks.samples import SampleLogger
    from gp3d.callbacks.video import VideoLogger

    assert "turntable" in (VideoLogger.__doc__ or "")  # the class docstring, not a stray string
    assert VideoLogger.final_in_fast_dev_run is False and SampleLogger.final_in_fast_dev_run
    assert FIDCallback.skip_final_if_fired and NonFlatnessScore.skip_final_if_fired


def test_sample_grid_is_reproducible_and_leaves_the_training_rng_alone(tmp_path):
    from gp3d.callbacks.samples import SampleLogger
    from tests.tiny_generator import tiny_generator

    G = tiny_generator(tmp_path).G
    module = SimpleNamespace(
        G=G,
        G_ema=G,
        device=torch.device("cpu"),
        nimg=torch.tensor(0),
        sample=lambda z, c, **kw: G(z, c, noise_mode="const", **kw),
    )
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), loggers=[])
    cb = SampleLogger(num_samples=2, views=(0.0, 0.5), resolution=8)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = cb.render_and_save(trainer, module, "a")[0].read_bytes()
    assert torch.equal(torch.get_rng_state(), state)
    assert cb.render_and_save(trainer, module, "b")[0].read_bytes() == first


def test_checkpoint_on_exception_under_ddp_needs_no_other_rank(tmp_path):
    """An exception may hit one rank while the others wait in a collective: the last.ckpt on
    exception is then written by rank 0 alone, with no barrier (Trainer.save_checkpoint has one),
    the other ranks write nothing, and a sharded strategy is left alone with a warning."""
    import pytest
    from lightning.pytorch.strategies import DDPStrategy

    from gp3d.callbacks.checkpoint import KimgCheckpoint

    class NoCollectivesDDP(DDPStrategy):
        def __init__(self) -> None:  # no cluster: only what on_exception may touch
            self.saved = []

        def save_checkpoint(self, checkpoint, filepath, storage_options=None) -> None:
            self.saved.append((checkpoint, filepath))

        def barrier(self, *args, **kwargs) -> None:
            raise AssertionError("a barrier would hang when the other ranks are elsewhere")

    def hang(*args, **kwargs):
        raise AssertionError("Trainer.save_checkpoint ends with a barrier")

    def trainer(rank: int, strategy) -> SimpleNamespace:
        dump = SimpleNamespace(dump_checkpoint=lambda weights_only: {"rank": rank})
        return SimpleNamespace(
            world_size=2, global_rank=rank, strategy=strategy, default_root_dir=str(tmp_path),
            save_checkpoint=hang, _checkpoint_connector=dump,
        )  # fmt: skip

    cb, module = KimgCheckpoint(every_kimg=1.0), SimpleNamespace(nimg=torch.tensor(8))
    for rank in (0, 1):
        ddp = NoCollectivesDDP()
        cb.on_exception(trainer(rank, ddp), module, ValueError("NaN on this rank"))
        expected = [({"rank": 0}, tmp_path / "checkpoints" / "last.ckpt")] if rank == 0 else []
        assert ddp.saved == expected
    with pytest.warns(UserWarning, match="newest periodic checkpoint"):
        cb.on_exception(trainer(0, SimpleNamespace()), module, KeyboardInterrupt())
