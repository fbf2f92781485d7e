"""Composing the training config for tests: tiny sizes, CPU, offline, outputs in tmp_path."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# Applied after any experiment so that every experiment runs on a 2-core CPU in seconds.
TINY_DATA = [
    "data.resolution=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.epoch_images=64",
    "data.prepare.num_samples=48",
    "data.prepare.teacher.model_name=resnet10t",  # small random-init teacher: 512-d features
    "data.prepare.teacher.input_size=32",
]
TINY_MODEL = [
    "model.z_dim=16",
    "model.w_dim=16",
    "model.patch_resolution=16",
    "model.synthesis.plane_resolution=16",
    "model.synthesis.plane_channels=8",
    "model.synthesis.channel_base=256",
    "model.synthesis.channel_max=16",
    "model.decoder.hidden_dim=16",
    "model.renderer.num_coarse=6",
    "model.renderer.num_fine=6",
    "model.discriminator.channel_base=256",
    "model.discriminator.channel_max=32",
    "trainer.accelerator=cpu",
    "logger=csv",
    "callbacks.samples.resolution=16",
    "callbacks.samples.num_samples=2",
    "callbacks.video.num_frames=3",
    "callbacks.video.seeds=[0]",
    "callbacks.video.resolution=16",
    "callbacks.video.camera_samples=16",
    "callbacks.nfs.num_samples=2",
    "callbacks.nfs.resolution=16",
]
TINY = TINY_DATA + TINY_MODEL


def compose_train(overrides: list[str], output_dir: Path, data_dir: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.data_dir = str(data_dir)
    GlobalHydra.instance().clear()
    return cfg
