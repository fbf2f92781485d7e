"""LeReS (``--model leres``): the real ResNeXt-101 architecture with random weights (no network),
its release checkpoint layout, preprocessing, the maps' convention and the offline errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from data_prep import common
from data_prep import estimate_depth as ed
from data_prep.depth import leres
from data_prep.depth.leres_net import to_release_keys
from data_prep.depth.model import DepthModel
from data_prep.folder_source import depth_relpath
from data_prep.images import load_depth, load_rgb
from data_prep.predict_depth import predict_depth
from tests.photo_dataset import make_photo_dataset

SIZE = 64  # input side for speed (the release runs 448: see the slow test)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # see conftest.one_thread
    yield


@pytest.fixture(scope="module")
def random_leres():
    return DepthModel("random:leres", seed=1, input_size=SIZE).load("cpu")


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    return make_photo_dataset(tmp_path_factory.mktemp("b") / "src", per_class=1, depth="none")


def test_preprocessing_is_the_releases():
    x = leres.LeReSProcessor(SIZE)(images=Image.new("RGB", (50, 30), (255, 128, 0)))
    x = x["pixel_values"]
    assert x.shape == (1, 3, SIZE, SIZE) and x.dtype == torch.float32  # square, aspect not kept
    want = (np.array([255, 128, 0]) / 255 - leres.IMAGENET_MEAN) / leres.IMAGENET_STD
    assert torch.allclose(x[0, :, 5, 7], torch.tensor(want, dtype=torch.float32), atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 32"):
        leres.LeReSProcessor(100)


def test_release_checkpoint_loads_through_the_real_path(random_leres, tmp_path):
    net = random_leres.model.net
    state = net.state_dict()
    assert any(k.startswith("encoder.layer4.2.conv2") for k in state)  # ResNeXt-101: 3 blocks
    assert state["encoder.layer3.22.conv2.weight"].shape == (1024, 32, 3, 3)  # 23 blocks, 32 groups
    # the release's file: {"depth_model": DataParallel ("module.") keys, + its other networks}
    release = {"depth_model": to_release_keys(state), "shift_model": {"x": torch.zeros(1)}}
    assert "module.depth_model.encoder_modules.encoder.conv1.weight" in release["depth_model"]
    assert "module.depth_model.decoder_modules.outconv.adapt_conv.3.bias" in release["depth_model"]
    path = tmp_path / "res101.pth"
    torch.save(release, path)
    loaded = DepthModel("leres", seed=2, weights=str(path), input_size=SIZE).load("cpu")
    assert all(torch.equal(v, state[k]) for k, v in loaded.model.net.state_dict().items())
    x = torch.randn(1, 3, SIZE, SIZE)
    size = [(40, 50)]
    assert np.array_equal(loaded.predict(x, size)[0], random_leres.predict(x, size)[0])
    rec = loaded.record()
    assert rec["weights_sha256"] == leres.file_sha256(path) and rec["prediction"] == "depth"
    # another network's file (here: one matching key, the rest missing) is refused by name
    key = "module.depth_model.decoder_modules.conv1.bias"
    torch.save({"depth_model": {key: release["depth_model"][key].clone()}}, path)
    with pytest.raises(leres.LeReSWeightsError, match="not a LeReS ResNeXt-101 checkpoint"):
        leres.load_weights(net, path)  # (the one key holds the value it already has)


@pytest.fixture(scope="module")
def estimated(bare, tmp_path_factory):
    out = tmp_path_factory.mktemp("leres") / "d"
    res = ed.estimate_depth(bare.src, out, model="random:leres", seed=1, input_size=SIZE,
                            batch_size=2)  # fmt: skip
    return out, res


def test_maps_are_the_releases_dumps(random_leres, bare, estimated):
    out, res = estimated
    assert res.written == bare.num_kept + 1  # + the tiny 5x4 image (write_shards skips it)
    info = json.loads((out / ed.INFO_NAME).read_text())["estimator"]
    assert info["model_type"] == "leres" and info["prediction"] == "depth"
    assert info["max_ratio"] is None  # no floor: the whole LeReS range, as its release
    for rel in bare.kept:
        stored = load_depth(out / depth_relpath(rel))
        image = Image.fromarray(load_rgb(bare.image_root / rel))  # as the pipeline reads it
        assert stored.dtype == np.uint16 and stored.shape == image.size[::-1]
        x = random_leres.preprocess(image)[None]
        pred = random_leres.predict(x, [stored.shape])[0]  # depth - min + 0.01, image size
        assert pred.min() > 0
        # depth / max * 60000, larger = farther: no inversion, no floor
        want = pred / pred.max() * common.DEPTH_MAX_VALUE
        assert stored.max() == common.DEPTH_MAX_VALUE
        assert np.abs(stored.astype(float) - want).max() <= 1.0


def test_predict_depth_writes_the_same_maps(bare, estimated, tmp_path):
    out, _ = estimated
    res = predict_depth(bare.src, tmp_path / "p", model="random:leres", seed=1, input_size=SIZE,
                        batch_size=3, accelerator="cpu", devices=1)  # fmt: skip
    assert res["maps"] == bare.num_kept + 1
    for rel in bare.kept:  # other batch composition than estimate_depth's: float noise only
        a, b = (load_depth(d / depth_relpath(rel)).astype(int) for d in (out, tmp_path / "p"))
        assert np.abs(a - b).max() <= 2


def test_missing_weights_offline_is_one_clear_line(bare, tmp_path, capsys):
    assert leres.HUB_REPO  # conftest sets HF_HUB_OFFLINE=1: the hub download must fail fast
    out = tmp_path / "d"
    argv = [str(bare.src), "--out", str(out), "--model", "leres", "--quiet", "--workers", "0"]
    assert ed.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "res101.pth" in err and "--depth-weights PATH" in err
    assert not out.exists()  # failed before anything was written
    assert ed.main([*argv, "--depth-weights", str(tmp_path / "nope.pth")]) == 1
    err = capsys.readouterr().err.strip()
    assert "nope.pth not found" in err and "--depth-weights" in err and len(err.splitlines()) == 1
    (tmp_path / "torn.pth").write_bytes(b"<html>not a checkpoint</html>")  # e.g. a bad download
    with pytest.raises(leres.LeReSWeightsError, match="cannot read LeReS weights .*torn.pth"):
        leres.read_checkpoint(tmp_path / "torn.pth")
    with pytest.raises(ValueError, match="LeReS options"):
        DepthModel("random:dpt-tiny", weights="res101.pth")


@pytest.mark.slow  # a 448 px ResNeXt-101 forward (seconds on one core); fast tests run it at 64 px
def test_release_resolution_448(random_leres):
    x = leres.LeReSProcessor()(images=Image.new("RGB", (500, 375), (90, 140, 200)))
    assert x["pixel_values"].shape == (1, 3, 448, 448)  # the release's input
    with torch.inference_mode():
        out = random_leres.model(**x).predicted_depth
    assert out.shape == (1, 448, 448) and torch.isclose(out.min(), torch.tensor(leres.MIN_DEPTH))
