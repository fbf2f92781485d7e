"""Bad configs fail before any compute, naming the setting; every shipped experiment passes."""

from pathlib import Path

import pytest

from gp3d.config_checks import ConfigError, check_config, config_problems
from gp3d.train import train
from tests.helpers import compose_train

EXPERIMENTS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml")
)
ABLATIONS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "ablation").glob("*.yaml")
)
# what each ablation must change on top of the CPU recipe: [(dotted key, value), ...]
CAMERA_GENERATOR = [("camera.prior.fov.min", 10.0), ("model.camera_generator.hid_dim", 64)]
KD_TRAINED = [("model.kd_dim", 512), ("data.use_embeddings", True)]
ABLATION_EFFECT = {
    "adaptor_p1": [("model.depth_adaptor.p", 1.0)],
    "adaptor_p05": [("model.depth_adaptor.p", 0.5)],
    "no_adaptor": [("model.depth_adaptor", None)],
    "rgb_only": [("model.discriminator.in_channels", 3)],
    "no_class_head": [("model.module.class_weight", 0.0)],
    "multiview": [("model.module.num_views", 2)],
    "strong_backbone": [("model.synthesis.extra_blocks", 1)],
    "camera_generator": CAMERA_GENERATOR,
    "kd_trained": KD_TRAINED,
    "3dgp": CAMERA_GENERATOR + KD_TRAINED,  # both, on top of the recipe's depth adaptor
}

# (overrides on the smoke experiment, the setting the message must name)
BAD = [
    (["model.patch_resolution=64"], "model.patch_resolution"),
    (["data.resolution=48"], "data.resolution"),
    (["model.patch_resolution=2"], "model.patch_resolution"),
    (["+model.module.patch_min_scale=1.5"], "patch_min_scale"),
    (["data.batch_size=0"], "data.batch_size"),
    (["data.batch_size=6", "trainer.devices=4"], "trainer.devices"),
    (["data.epoch_images=2"], "data.epoch_images"),
    (["data.num_workers=-1"], "data.num_workers"),
    (["model.c_dim=-2"], "model.c_dim"),
    (["model.z_dim=0"], "model.z_dim"),
    (["model.kd_dim=512", "data.use_embeddings=false"], "data.use_embeddings"),
    (["model.discriminator.in_channels=3"], "model.discriminator.in_channels"),
    (["model.use_depth=false", "model.discriminator.in_channels=3"], "model.depth_adaptor"),
    (["model.total_kimg=0"], "model.total_kimg"),
    (["model.module.r1_interval=0"], "model.module.r1_interval"),
    (["+model.module.r1_gamma=-1"], "model.module.r1_gamma"),
    (["+model.module.ema_kimg=-1"], "model.module.ema_kimg"),
    (["+model.module.blur_sigma=[-1,10]"], "model.module.blur_sigma"),
    (["+model.module.kd_weight=[-1,0,10]"], "model.module.kd_weight"),
    (["model.renderer.num_fine=0"], "model.renderer.num_fine"),
    (["callbacks.samples.every_kimg=-1"], "callbacks.samples.every_kimg"),
    (["callbacks.checkpoint.keep_last=0"], "callbacks.checkpoint.keep_last"),
    (["camera.near=1.5"], "camera.near"),
    (["camera.prior.yaw.min=2.0"], "camera.prior.yaw"),
    (["camera.prior.fov.max=200"], "camera.prior.fov.max"),
    (["camera.prior.la_radius.min=0.5"], "camera.prior.la_radius"),
]


@pytest.mark.parametrize(("overrides", "setting"), BAD, ids=[s for _, s in BAD])
def test_bad_config_fails_before_compute_naming_the_setting(overrides, setting, tmp_path):
    cfg = compose_train(["experiment=smoke", "trainer=cpu", *overrides], tmp_path, tmp_path)
    with pytest.raises(ConfigError, match=setting.replace(".", r"\.")):
        check_config(cfg)
    # The entry point runs the same check first: nothing is created (no dataset, no run folder).
    with pytest.raises(ConfigError):
        train(cfg)
    assert not any(tmp_path.iterdir())


def test_at_least_twenty_bad_configs():
    assert len(BAD) >= 20


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_shipped_experiment_passes_the_checks(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}"], tmp_path, tmp_path)
    assert config_problems(cfg) == []


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_ablation_on_the_cpu_recipe_passes_the_checks(ablation, tmp_path):
    from omegaconf import OmegaConf

    cfg = compose_train(["experiment=synthetic_fast", f"ablation={ablation}"], tmp_path, tmp_path)
    assert config_problems(cfg) == []
    base = compose_train(["experiment=synthetic_fast"], tmp_path, tmp_path)
    if ablation == "none":
        assert OmegaConf.to_container(cfg.model) == OmegaConf.to_container(base.model)
        return
    for key, value in ABLATION_EFFECT[ablation]:
        assert OmegaConf.select(cfg, key) == value != OmegaConf.select(base, key), key
    if ablation == "3dgp":  # the depth adaptor stays the recipe's
        assert cfg.model.depth_adaptor == base.model.depth_adaptor


def test_all_problems_are_reported_at_once(tmp_path):
    cfg = compose_train(
        ["experiment=smoke", "model.total_kimg=0", "camera.near=2.0"], tmp_path, tmp_path
    )
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert "model.total_kimg" in str(err.value) and "camera.near" in str(err.value)
