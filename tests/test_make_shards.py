"""The whole chain (selection -> depth model -> write_shards -> teacher -> validate) on
photographs with tiny random networks, into gp3d's data module; resume after an interruption;
the ``make shards`` target's command line."""

import shutil
import subprocess

import pytest

from data_prep import common, make_shards
from data_prep.estimate_depth import INFO_NAME
from data_prep.shards import worker as shard_worker
from tests.photo_dataset import make_photo_dataset
from tests.test_pipeline import _datamodule

RES = 32
pytestmark = pytest.mark.filterwarnings("ignore:teacher features come from a random network")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # see conftest.one_thread
    yield


def _argv(src, dest, *extra):
    return [str(src), "--out", str(dest), "--resolution", str(RES), "--workers", "0",
            "--quiet", "--shard-size", "4", "--select-ratio", "0.7", "--feature-net", "random:4",
            "--depth", "random:depth-anything-tiny", "--depth-batch-size", "4",
            "--teacher", "resnet10t", "--teacher-weights", "random", "--teacher-input-size",
            "32", "--full", *extra]  # fmt: skip


def test_chain_into_the_data_module_and_resume(tmp_path, monkeypatch):
    photos = make_photo_dataset(tmp_path / "imagenet", per_class=5, max_side=48, depth="none",
                                train_subdir=True)  # fmt: skip
    dest = tmp_path / "in32"
    real = shard_worker.encode_sample
    calls = []

    def interrupted(*args):  # dies in the middle of write_shards (after selection and depth)
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(shard_worker, "encode_sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_shards.main(_argv(photos.src, dest))
    assert not (dest / common.MANIFEST_NAME).exists()
    work = tmp_path / "in32.work"
    maps = {p: p.stat().st_mtime_ns for p in (work / "depth").rglob("*_depth.png")}
    assert maps and (work / "depth" / INFO_NAME).is_file()
    monkeypatch.setattr(shard_worker, "encode_sample", real)

    assert make_shards.main(_argv(photos.src, dest)) == 0
    assert {p: p.stat().st_mtime_ns for p in maps} == maps  # depth not recomputed
    manifest = common.read_manifest(dest, verify_checksums=True)
    selected = (work / "selection.txt").read_text().splitlines()
    selected = [s for s in selected if not s.startswith("#")]
    assert manifest["num_samples"] == len([s for s in selected if s in photos.kept]) > 0
    assert manifest["embedding_dim"] == 512 and manifest["source"]["selection"] is not None
    assert manifest["depth"]["estimate"]["estimator"]["prediction"] == "disparity"
    before = (dest / common.MANIFEST_NAME).read_bytes()
    assert make_shards.main(_argv(photos.src, dest)) == 0  # finished: a no-op
    assert (dest / common.MANIFEST_NAME).read_bytes() == before

    cfg, dm = _datamodule("imagenet", dest, tmp_path)
    assert (cfg.model.c_dim, cfg.model.kd_dim) == (5, 512)
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape == (4, 3, RES, RES) and batch.depth.shape == (4, 1, RES, RES)
    assert batch.embedding.shape == (4, 512) and batch.depth.std() > 0


def test_release_with_maps_beside_no_teacher(tmp_path):
    photos = make_photo_dataset(tmp_path / "dogs", per_class=1, max_side=48, odd_files=False)
    argv = [str(photos.src), "--out", str(tmp_path / "d32"), "--resolution", str(RES),
            "--workers", "0", "--quiet", "--teacher", "none", "--depth", "import"]  # fmt: skip
    assert make_shards.main(argv) == 0
    manifest = common.read_manifest(tmp_path / "d32")
    assert manifest["num_samples"] == photos.num_kept and manifest["embedding_dim"] is None
    assert manifest["depth"]["estimate"]["estimator"]["method"] == "import"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_target_command_line():
    out = subprocess.run(
        ["make", "-n", "shards", "SRC=/data/in", "DEST=/data/out", "DEPTH=import",
         "SELECT_RATIO=0.5", "WORKERS=3"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "-m data_prep.make_shards" in out and '"/data/in" --out "/data/out"' in out
    assert "--resolution 256" in out and '--depth "import"' in out
    assert "--select-ratio 0.5" in out and "--workers 3" in out
    usage = subprocess.run(["make", "shards"], capture_output=True, text=True)
    assert usage.returncode != 0 and "usage: make shards" in usage.stdout


def test_every_tool_has_help(capsys):
    from data_prep import estimate_depth, extract_features, select_instances, validate, write_shards

    for tool in (make_shards, select_instances, estimate_depth, write_shards, extract_features,
                 validate):  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            tool.main(["--help"])
        assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["imagenet", "dogs", "elephants", "horses"])
def test_dataset_configs_compose(name, tmp_path):
    from tests.helpers import compose_train

    experiment = "3dgp_imagenet" if name == "imagenet" else "3dgp"
    cfg = compose_train(
        [f"data={name}", f"experiment={experiment}"], tmp_path / "r", tmp_path / "d"
    )
    assert cfg.data.path == str(tmp_path / "d" / f"{name}_256") and cfg.data.resolution == 256
    assert cfg.data.create_hint.startswith("make shards SRC=")
