"""End-to-end training runs on CPU: every experiment, the smoke run's outputs, resume, bad input."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.errors import MissingConfigException
from omegaconf import open_dict

from gp3d.data.prepare import prepare_dataset
from gp3d.train import ConfigError, train
from gp3d.training.lit_module import GP3DLitModule as LitModule
from tests.helpers import TINY, TINY_MODEL, compose_train

EXPERIMENTS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml")
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")  # the synthetic dataset is generated here on first use


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_every_experiment(experiment, tmp_path, data_dir):
    cfg = compose_train(
        [f"experiment={experiment}", *TINY, "+trainer.fast_dev_run=true"], tmp_path, data_dir
    )
    out = train(cfg)
    lit = out["model"]
    assert lit.nimg.item() == 4  # one batch of 4 images through G, D and R1
    for p in lit.G.parameters():
        assert torch.isfinite(p).all()


def _recording_fake(zs: list):
    """LitModule._fake that also records the latents it draws."""
    real = LitModule._fake

    def fake(self, *args, **kwargs):
        state = torch.get_rng_state()
        zs.append(torch.randn(1, self.G.z_dim, device=self.device))
        torch.set_rng_state(state)  # leave the run's own draws unchanged
        return real(self, *args, **kwargs)

    return fake


def test_bf16_mixed_precision_trains_the_full_recipe(tmp_path, data_dir):
    """trainer.precision=bf16-mixed (Lightning's autocast, also on CPU) through G, D, R1 and the
    EMA: finite weights, float32 parameters and buffers (w_avg was updated from bf16 ws)."""
    cfg = compose_train(
        [
            "experiment=synthetic",
            *TINY,
            "+trainer.fast_dev_run=true",
            "trainer.precision=bf16-mixed",
        ],
        tmp_path,
        data_dir,
    )
    lit = train(cfg)["model"]
    assert lit.nimg.item() == 4
    for name, t in [*lit.named_parameters(), *lit.named_buffers()]:
        if t.is_floating_point():
            assert t.dtype == torch.float32 and torch.isfinite(t).all(), name
    assert not torch.equal(lit.G.mapping.w_avg, torch.zeros_like(lit.G.mapping.w_avg))


@pytest.mark.slow  # two training runs, one through torch.compile's graph capture (~30 s)
def test_compiled_generator_trains_and_checkpoints_under_its_own_names(tmp_path, data_dir):
    """model.module.compile=true (aot_eager here: graph capture without C++ codegen) compiles
    G's synthesis and decoder in place: same parameter names in the checkpoint, finite weights."""
    overrides = ["experiment=synthetic", *TINY, "+trainer.fast_dev_run=true"]
    cfg = compose_train(
        [*overrides, "model.module.compile=true", "model.module.compile_backend=aot_eager"],
        tmp_path / "compiled",
        data_dir,
    )
    lit = train(cfg)["model"]
    assert lit.compiled == ["G.synthesis", "G.decoder"]
    assert lit.G.synthesis._compiled_call_impl is not None
    assert lit.nimg.item() == 4 and all(torch.isfinite(p).all() for p in lit.G.parameters())
    eager = train(compose_train(overrides, tmp_path / "eager", data_dir))["model"]
    assert lit.state_dict().keys() == eager.state_dict().keys()


def test_compile_failure_falls_back_to_eager(tmp_path, data_dir, monkeypatch):
    def no_compiler(self, *args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch.nn.Module, "compile", no_compiler)
    cfg = compose_train(
        ["experiment=smoke", *TINY, "+trainer.fast_dev_run=true", "model.module.compile=true"],
        tmp_path,
        data_dir,
    )
    with pytest.warns(UserWarning, match="G.synthesis failed .*no C.. compiler.*runs eager"):
        lit = train(cfg)["model"]
    assert lit.compiled == [] and lit.nimg.item() == 4


@pytest.mark.slow  # two training runs with samples and video (~40 s wall at load 3); fast
# coverage: test_resume_reseeds_the_training_rng_from_nimg, the tiny_run fixture's outputs
def test_smoke_run_leaves_checkpoints_samples_logs_and_resumes(tmp_path, data_dir, monkeypatch):
    cfg = compose_train(["experiment=smoke", *TINY, "model.total_kimg=0.012"], tmp_path, data_dir)
    prepare_dataset(
        cfg.data
    )  # the dataset made beforehand: it would use the RNG of the first run only
    with monkeypatch.context() as m:
        m.setattr(LitModule, "_fake", _recording_fake(first_z := []))
        out = train(cfg)
    assert out["model"].nimg.item() == 12
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.exists()
    samples = sorted((tmp_path / "samples").iterdir())
    assert any(p.suffix == ".png" for p in samples)
    assert any(p.suffix in (".mp4", ".gif") for p in samples)
    metrics = (tmp_path / "logs" / "metrics.csv").read_text()
    assert "train/loss_G" in metrics and "progress/kimg" in metrics
    assert not list(tmp_path.rglob("*.tmp*")), "no temporary files may be left behind"

    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert int(ckpt["state_dict"]["nimg"]) == 12
    cfg2 = compose_train(
        ["experiment=smoke", *TINY, "model.total_kimg=0.02"], tmp_path / "resume", data_dir
    )
    with open_dict(cfg2):
        cfg2.ckpt_path = str(last)
    import gp3d.data.datamodule as datamodule

    starts = []
    position_of = datamodule.stream_position
    monkeypatch.setattr(
        datamodule, "stream_position", lambda n, *a: starts.append(n) or position_of(n, *a)
    )
    monkeypatch.setattr(LitModule, "_fake", _recording_fake(resumed_z := []))
    out2 = train(cfg2)
    assert out2["model"].nimg.item() == 20  # continued from 12, not restarted
    assert starts == [12]  # the loader was made after the restore: the stream continues at 12
    # ... and new latents: a resumed run must not replay the fakes it drew from kimg 0
    assert not torch.equal(resumed_z[0], first_z[0])
    # EMA weights come back from the checkpoint too
    ema_key = next(k for k in ckpt["state_dict"] if k.startswith("G_ema."))
    assert ema_key in out2["model"].state_dict()


def test_resume_reseeds_the_training_rng_from_nimg():
    """The hook behind the check above (which Lightning's own RNG use may also satisfy): a run
    resumed at nimg > 0 draws a stream of its own, the same for every resume at that point."""

    def first_draw(nimg: int) -> torch.Tensor:
        torch.manual_seed(0)  # seed_everything: the same seed for the fresh and resumed runs
        LitModule.on_train_start(SimpleNamespace(nimg=torch.tensor(nimg)))
        return torch.randn(8)

    assert torch.equal(first_draw(0), first_draw(0))
    assert not torch.equal(first_draw(12), first_draw(0))
    assert not torch.equal(first_draw(12), first_draw(16))
    assert torch.equal(first_draw(12), first_draw(12))


def test_missing_dataset_path_names_path_and_command(tmp_path, data_dir):
    cfg = compose_train(
        [
            "experiment=epigraf",
            "data=shards",
            *TINY_MODEL,
            f"data.path={tmp_path / 'nope'}",
            "data.resolution=32",
            "data.use_embeddings=false",
            "data.batch_size=4",
        ],
        tmp_path,
        data_dir,
    )
    with pytest.raises(Exception) as err:
        train(cfg)
    msg = str(err.value)
    assert str(tmp_path / "nope") in msg and "data_prep" in msg


def test_unknown_experiment_lists_available_options(tmp_path, data_dir):
    with pytest.raises(MissingConfigException) as err:
        compose_train(["experiment=does_not_exist"], tmp_path, data_dir)
    assert "smoke" in str(err.value)  # Hydra lists the options that exist


def test_inconsistent_class_count_is_rejected(tmp_path, data_dir):
    cfg = compose_train(["experiment=smoke", *TINY, "model.c_dim=3"], tmp_path, data_dir)
    with pytest.raises(ConfigError, match="classes"):
        train(cfg)
