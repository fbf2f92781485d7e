"""estimate_depth on photographs: conversions, importing releases, tiny random transformers models
(from a preset and from a saved local folder), resume after an interruption, odd files counted."""

import io

import numpy as np
import pytest
from PIL import Image

from data_prep import common
from data_prep import estimate_depth as ed
from data_prep import write_shards as ws
from data_prep.depth.convert import infer_prediction_kind, prediction_to_depth, resize_depth
from data_prep.depth.model import DepthModel, DepthModelError
from data_prep.folder_source import depth_relpath
from data_prep.images import load_depth
from data_prep.shards.worker import find_depth
from tests.photo_dataset import make_photo_dataset

TINY = "random:depth-anything-tiny"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # see conftest.one_thread
    yield


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photo_dataset(tmp_path_factory.mktemp("p") / "src", per_class=2, train_subdir=True)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):  # no depth maps at all: what a depth model is for
    return make_photo_dataset(tmp_path_factory.mktemp("b") / "src", per_class=2, depth="none")


def _maps(folder):
    return {p.relative_to(folder).as_posix(): load_depth(p) for p in folder.rglob("*_depth.png")}


def test_disparity_is_inverted_and_clipped():
    disp = np.array([[4.0, 2.0], [0.4, 0.0]])  # larger = nearer; 0 = sky
    depth = prediction_to_depth(disp, "disparity", max_ratio=10)
    assert np.allclose(depth, [[1.0, 2.0], [10.0, 10.0]])  # nearest 1, far plane max_ratio
    raw = np.asarray(Image.open(io.BytesIO(common.encode_relative_depth(depth))))
    assert raw.max() == common.DEPTH_MAX_VALUE and raw.min() == common.DEPTH_MAX_VALUE // 10
    metric = prediction_to_depth(np.array([[3.0, 0.0], [np.nan, 30.0]]), "depth", max_ratio=10)
    assert np.allclose(metric, [[3.0, 3.0], [3.0, 30.0]])  # kept, floored at max / ratio
    with pytest.raises(ValueError, match="no finite positive"):
        prediction_to_depth(np.zeros((3, 3)), "disparity")
    assert resize_depth(np.full((4, 6), 7, np.uint16), (12, 8)).shape == (8, 12)


def test_prediction_kind_from_config():
    from transformers import DepthAnythingConfig, DPTConfig, ZoeDepthConfig

    assert infer_prediction_kind(DepthAnythingConfig()) == "disparity"
    assert infer_prediction_kind(DepthAnythingConfig(depth_estimation_type="metric")) == "depth"
    assert infer_prediction_kind(DPTConfig()) == "disparity"
    assert infer_prediction_kind(ZoeDepthConfig()) == "depth"
    with pytest.raises(ValueError, match="--prediction"):
        infer_prediction_kind(type("C", (), {"model_type": "mystery"})())


def test_import_release_maps_matches_reading_them_in_place(photos, tmp_path):
    res = ed.estimate_depth(photos.src, tmp_path / "d", import_from=photos.src, workers=2)
    maps = _maps(tmp_path / "d")
    # images of the release with a usable map: kept ones plus files write_shards skips later
    assert set(maps) == {depth_relpath(r) for r in photos.kept}
    assert res.written == len(maps) and res.skipped["no_depth"] == 1
    assert res.skipped["depth_mismatch"] >= 1 and res.skipped["image_unreadable"] == 1
    for rel in photos.kept:  # 16-bit copied, 8-bit x 256, the ._depth.png spelling found
        src = find_depth(photos.image_root, rel)
        assert np.array_equal(maps[depth_relpath(rel)], load_depth(src))
    # shards from the imported tree are byte-identical to shards reading the release in place
    kw = dict(resolution=32, shard_size=4)
    ws.write_shards(photos.src, tmp_path / "a", **kw)
    ws.write_shards(photos.src, tmp_path / "b", depth_dir=tmp_path / "d", **kw)
    shards = [sorted(p.read_bytes() for p in (tmp_path / x).glob("*.tar")) for x in "ab"]
    assert shards[0] == shards[1]
    manifest = common.read_manifest(tmp_path / "b")
    assert manifest["depth"]["estimate"]["estimator"]["method"] == "import"
    assert manifest["depth"]["estimate"]["num_maps"] == len(maps)


def test_import_leres_dump_disparity_and_resizing(tmp_path):
    ds = make_photo_dataset(tmp_path / "src", per_class=1, odd_files=False, depth="none")
    dump = tmp_path / "dump"  # LeReS-style names <stem>.png, half size, as disparity
    truth = {}
    for rel in ds.kept:
        w, h = Image.open(ds.image_root / rel).size
        yy = np.linspace(1.0, 4.0, h // 2)[:, None] * np.ones((1, w // 2))  # depth grows downward
        truth[rel] = yy
        path = dump / rel.rsplit(".", 1)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".png").write_bytes(common.encode_relative_depth(1.0 / yy))
    res = ed.estimate_depth(ds.src, tmp_path / "d", import_from=dump, kind="disparity")
    assert res.written == len(ds.kept) and not res.skipped
    for rel in ds.kept:
        d = load_depth(tmp_path / "d" / depth_relpath(rel))
        assert d.shape == np.asarray(Image.open(ds.image_root / rel)).shape[:2]  # resized
        assert d.max() == common.DEPTH_MAX_VALUE and d[-1].mean() > 3 * d[0].mean()  # inverted


def test_random_model_maps_feed_write_shards(bare, tmp_path):
    res = ed.estimate_depth(bare.src, tmp_path / "d", model=TINY, batch_size=3)
    assert res.written == bare.num_kept + 1  # + the tiny 5x4 image (write_shards skips it)
    assert res.skipped == {"truncated": 1, "unreadable": 1}
    maps = _maps(tmp_path / "d")
    for rel in bare.kept:  # at the image's size, nearest at 60000 / max_ratio, farthest 60000
        d = maps[depth_relpath(rel)]
        assert d.shape == Image.open(bare.image_root / rel).size[::-1]
        assert d.max() == common.DEPTH_MAX_VALUE and d.min() >= common.DEPTH_MAX_VALUE // 10 - 1
    out = ws.write_shards(bare.src, tmp_path / "s", resolution=32, shard_size=4,
                          depth_dir=tmp_path / "d")  # fmt: skip
    assert out.num_samples == bare.num_kept
    estimate = common.read_manifest(tmp_path / "s")["depth"]["estimate"]["estimator"]
    assert estimate["source"] == TINY and estimate["prediction"] == "disparity"


def test_local_model_folder_and_clear_errors(bare, tmp_path):
    model = DepthModel("random:dpt-tiny", seed=3).load("cpu")
    folder = tmp_path / "dpt"
    model.model.save_pretrained(folder)
    model.processor.save_pretrained(folder)
    argv = [str(bare.src), "--out", str(tmp_path / "d"), "--model", str(folder), "--quiet",
            "--workers", "0", "--batch-size", "4"]  # fmt: skip
    assert ed.main(argv) == 0
    info = (tmp_path / "d" / ed.INFO_NAME).read_text()
    assert '"model_type": "dpt"' in info and '"prediction": "disparity"' in info
    assert {depth_relpath(r) for r in bare.kept} <= set(_maps(tmp_path / "d"))
    with pytest.raises(DepthModelError, match="local folder holding config.json"):
        DepthModel(str(tmp_path / "missing_model")).load("cpu")
    with pytest.raises(DepthModelError, match="unknown random preset"):
        DepthModel("random:huge").load("cpu")
    with pytest.raises(FileExistsError, match="other parameters"):  # other model, same --out
        ed.estimate_depth(bare.src, tmp_path / "d", model=TINY)
    with pytest.raises(ValueError, match="inside the image folder"):
        ed.estimate_depth(bare.src, bare.src / "depth", model=TINY)


def test_resume_after_interruption(bare, tmp_path):
    full = tmp_path / "full"
    ed.estimate_depth(bare.src, full, model=TINY, batch_size=2)

    def stop(done, total):
        raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        ed.estimate_depth(bare.src, out, model=TINY, batch_size=2, on_progress=stop)
    first = _maps(out)
    assert 0 < len(first) < len(_maps(full))
    assert not list(out.rglob("*.tmp-*")) and not (out / ed.INFO_NAME).exists()
    (out / "n02_cat").mkdir(exist_ok=True)
    (out / "n02_cat" / ".cat_00_depth.png.tmp-99999").write_bytes(b"torn")  # a killed run's
    res = ed.estimate_depth(bare.src, out, model=TINY, batch_size=2)
    assert res.reused == len(first) and res.written + res.reused == len(_maps(full))
    assert not list(out.rglob("*.tmp-*")) and (out / ed.INFO_NAME).is_file()
    resumed, ref = _maps(out), _maps(full)
    assert set(resumed) == set(ref)
    for k in ref:  # batch composition differs after resuming: float noise only
        assert np.abs(resumed[k].astype(int) - ref[k].astype(int)).max() <= 2


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        ed.main(["--help"])
    text = capsys.readouterr().out
    assert exc.value.code == 0 and "--import-from" in text and "--model" in text


def test_exif_rotated_image_imports_map_of_the_displayed_image(tmp_path):
    src = tmp_path / "flat"
    src.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 60x40, displayed 40x60 (rotated 90 degrees)
    Image.new("RGB", (60, 40), (90, 120, 200)).save(src / "rot.jpg", exif=exif)
    depth = np.linspace(1, 2, 60)[:, None] * np.ones((1, 40))  # displayed orientation
    (src / "rot_depth.png").write_bytes(common.encode_relative_depth(depth))
    res = ed.estimate_depth(src, tmp_path / "d", import_from=src)
    assert res.written == 1 and not res.skipped
    shards = ws.write_shards(src, tmp_path / "s", resolution=16, depth_dir=tmp_path / "d")
    assert shards.num_samples == 1  # write_shards agrees on the orientation


def test_a_failing_batch_falls_back_to_single_images(bare, tmp_path, monkeypatch):
    real = DepthModel.predict
    sizes_of = {rel: Image.open(bare.image_root / rel).size[::-1] for rel in bare.kept}
    bad = sizes_of[sorted(bare.kept)[0]]  # (H, W) of one image that keeps failing on its own

    def flaky(self, pixels, sizes):
        if len(sizes) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        if tuple(sizes[0]) == bad:
            raise RuntimeError("kernel error (simulated)")
        return real(self, pixels, sizes)

    monkeypatch.setattr(DepthModel, "predict", flaky)
    res = ed.estimate_depth(bare.src, tmp_path / "d", model=TINY, batch_size=4)
    n_bad = sum(s == bad for s in sizes_of.values())
    assert res.skipped["error"] == n_bad and res.written == bare.num_kept + 1 - n_bad
    assert "kernel error (simulated)" in (tmp_path / "d" / ed.SKIPPED_NAME).read_text()


def test_zoedepth_padding_is_cut_off_so_maps_align_with_images():
    """ZoeDepth's processor reflect-pads the image before resizing it; a prediction that covers
    the padding must be cropped back, or the depth is shrunk ~20 % inside the image frame."""
    import types

    import torch
    from transformers import DPTImageProcessor, ZoeDepthImageProcessor

    from data_prep.depth.model import input_padding

    class Channel0(torch.nn.Module):  # "predicts" its input's first channel: alignment visible
        def forward(self, pixel_values):
            return types.SimpleNamespace(predicted_depth=pixel_values[:, 0])

    model = DepthModel("unused", prediction="depth")
    model.model, model.device = Channel0(), torch.device("cpu")
    model.processor = ZoeDepthImageProcessor(
        size={"height": 64, "width": 64}, keep_aspect_ratio=False, do_normalize=False
    )
    img = np.zeros((40, 60, 3), np.uint8)
    img[8:20, 10:30] = 255
    (pred,) = model.predict(model.preprocess(Image.fromarray(img))[None], [(40, 60)])
    assert pred.shape == (40, 60)
    assert np.abs(pred - img[..., 0] / 255).mean() < 0.02  # 0.10 without the crop
    assert input_padding(DPTImageProcessor(), 40, 60) == (0, 0)
    with pytest.raises(DepthModelError, match="do_pad"):
        input_padding(DPTImageProcessor(do_pad=True), 40, 60)


def _png_grey_alpha_16(grey: np.ndarray) -> bytes:
    """A 16-bit grey + alpha PNG (what LeReS writes; Pillow cannot) using all five row filters."""
    import struct
    import zlib

    def paeth(a, b, c):
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        return a if pa <= pb and pa <= pc else b if pb <= pc else c

    pix = np.stack([grey, np.full_like(grey, 65535)], -1).astype(">u2")
    rows, prev, bpp = [], bytes(grey.shape[1] * 4), 4
    for y in range(grey.shape[0]):
        raw, kind = pix[y].tobytes(), y % 5
        out = bytearray()
        for i, x in enumerate(raw):
            a, b = raw[i - bpp] if i >= bpp else 0, prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pred = (0, a, b, (a + b) // 2, paeth(a, b, c))[kind]
            out.append((x - pred) % 256)
        rows.append(bytes([kind]) + bytes(out))
        prev = raw

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    h, w = grey.shape
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))  # fmt: skip


def test_16bit_grey_alpha_depth_keeps_all_16_bits(tmp_path):
    """Pillow reads 16-bit grey + alpha PNGs as 8-bit RGBA; channel 0 must keep its low byte."""
    grey = np.random.default_rng(0).integers(0, 60001, (7, 9)).astype(np.uint16)
    path = tmp_path / "a_depth.png"
    path.write_bytes(_png_grey_alpha_16(grey))
    assert np.array_equal(load_depth(path), grey)
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = 200, 10
    Image.fromarray(rgb).save(tmp_path / "b_depth.png")
    assert (load_depth(tmp_path / "b_depth.png") == 200 * 256).all()  # channel 0 (spec 5.1)


def test_corrupt_tiff_frame_is_a_counted_skip_not_a_crash(tmp_path):
    """A TIFF whose second IFD is corrupt raises TypeError from Pillow's n_frames: the depth
    model's image loader must count it (load_rgb raises only ImageSkip), not stop the run."""
    from data_prep.depth.inference import _ImageInputs
    from data_prep.images import ImageSkip, load_rgb

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    data[132] = 157  # one corrupt header byte: Pillow 13 fails with "Missing dimensions"
    (tmp_path / "x.tif").write_bytes(bytes(data))
    with pytest.raises(ImageSkip):
        load_rgb(tmp_path / "x.tif")
    i, pixels, why = _ImageInputs(tmp_path, ["x.tif"], processor=None)[0]
    assert (i, pixels) == (0, None) and why[0] == "unreadable"


@pytest.mark.parametrize("layout", ["grey16", "grey_alpha16", "rgb16", "rgba16"])
def test_16bit_depth_png_every_layout_round_trips(tmp_path, layout):
    """Every 16-bit PNG layout keeps its low byte in data_prep and in the training decoder;
    depth is the first channel (grey, or R of RGB(A)); the other channels differ on purpose."""
    import cv2

    from gp3d.data.decode import decode_depth_raw

    rng = np.random.default_rng(1)
    depth = rng.integers(0, 65536, (6, 8)).astype(np.uint16)
    depth[0, :4] = [1, 255, 257, 65535]  # low byte set
    other = rng.integers(0, 65536, (6, 8, 3)).astype(np.uint16)
    if layout == "grey_alpha16":
        data = _png_grey_alpha_16(depth)
    else:
        chans = {"grey16": depth, "rgb16": np.dstack([other[..., 1], other[..., 0], depth])}
        chans["rgba16"] = np.dstack([chans["rgb16"], other[..., 2]])  # OpenCV writes BGR(A)
        data = cv2.imencode(".png", chans[layout])[1].tobytes()
    path = tmp_path / "x_depth.png"
    path.write_bytes(data)
    for raw in (load_depth(path), decode_depth_raw(data)):
        assert raw.dtype == np.uint16 and np.array_equal(raw, depth)
