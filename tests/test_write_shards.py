"""write_shards on real photographs: odd files counted, alignment, determinism, resume, layouts."""

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from data_prep import common
from data_prep import write_shards as ws
from data_prep.folder_source import depth_relpath, write_selection
from data_prep.images import crop_resize, load_depth, load_rgb
from data_prep.shards import worker as shard_worker
from tests.photo_dataset import make_photo_dataset

RES, SHARD = 32, 4
KW = dict(resolution=RES, shard_size=SHARD)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photo_dataset(tmp_path_factory.mktemp("photos") / "src", train_subdir=True)


@pytest.fixture(scope="module")
def ref(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "shards"
    res = ws.write_shards(photos.src, out, **KW)
    assert not res.reused and res.shards_reused == 0
    return out


def _samples(folder):
    manifest = common.read_manifest(folder, verify_checksums=True)
    out = []
    for path in common.shard_paths(folder, manifest):
        with tarfile.open(path) as tar:
            samples = {}
            for m in tar:
                key, ext = m.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
            out += [{"__key__": k, **v} for k, v in samples.items()]
    return manifest, out


def _shard_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.tar"))}


def _leftovers(folder):
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


def test_odd_files_are_converted_or_skipped_and_counted(photos, ref):
    manifest, samples = _samples(ref)
    assert manifest["num_samples"] == photos.num_kept == len(samples)
    assert manifest["skipped"] == dict(photos.skips)  # every reason, counted once per file
    assert manifest["source_modes"] == dict(photos.modes)  # CMYK, L, I;16, RGBA, P converted
    lines = (ref / "skipped.txt").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[1] for line in lines) == sorted(photos.skips.elements())
    # class indices = sorted folder names; the val/ split is never read
    assert manifest["class_names"] == photos.class_folders
    assert manifest["source"]["root"].endswith("/train")
    labels = {}
    for s in samples:
        meta = json.loads(s["meta.json"])
        labels[meta["source"]] = int(s["cls"])
        assert "." not in s["__key__"]
    assert labels == photos.kept
    assert manifest["class_counts"] == np.bincount(list(photos.kept.values()), minlength=5).tolist()
    assert len({s["__key__"] for s in samples}) == len(samples)


def test_image_and_depth_are_cropped_and_resized_together(photos, ref):
    _, samples = _samples(ref)
    for s in samples:
        rel = json.loads(s["meta.json"])["source"]
        image = np.asarray(Image.open(io.BytesIO(s["png"])))
        depth_img = Image.open(io.BytesIO(s["depth.png"]))
        assert image.shape == (RES, RES, 3) and depth_img.mode == "I;16"
        assert np.array_equal(image, crop_resize(load_rgb(photos.image_root / rel), RES))
        if rel.startswith("n04_motorcycle/motorcycle_00"):  # real depth (inverse disparity)
            src_depth = load_depth(photos.image_root / rel.replace(".jpg", "_depth.png"))
            assert np.array_equal(np.asarray(depth_img), crop_resize(src_depth, RES))
            assert src_depth.max() == common.DEPTH_MAX_VALUE


def test_output_does_not_depend_on_workers(photos, ref, tmp_path):
    res = ws.write_shards(photos.src, tmp_path / "w2", workers=2, **KW)
    assert res.shards_written == len(_shard_bytes(ref)) and res.num_samples == photos.num_kept
    assert _shard_bytes(tmp_path / "w2") == _shard_bytes(ref)
    assert (
        json.loads((tmp_path / "w2/manifest.json").read_text())["shards"]
        == json.loads((ref / "manifest.json").read_text())["shards"]
    )


def _stop_after(k):
    def on_shard(done, total):
        if done == k:
            raise KeyboardInterrupt

    return on_shard


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_interruption_between_shards(photos, ref, tmp_path, workers):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        ws.write_shards(photos.src, out, on_shard=_stop_after(2), workers=workers, **KW)
    assert not (out / "manifest.json").exists() and not _leftovers(out)
    with pytest.raises(common.DatasetNotFoundError, match="not a finished dataset"):
        common.read_manifest(out)
    # a pool may finish a shard more; a worker killed between renaming its tar and writing the
    # shard's record leaves a complete tar that the resume cannot vouch for, so it rewrites it
    tars = len(list(out.glob("shard-*.tar")))
    committed = sum(shard_worker.load_valid_record(out, i) is not None for i in range(tars + 8))
    assert committed >= 2 if workers else committed == tars == 2
    assert tars >= committed
    res = ws.write_shards(photos.src, out, workers=workers, **KW)
    assert res.shards_reused == committed
    assert res.shards_written == len(_shard_bytes(ref)) - committed
    assert _shard_bytes(out) == _shard_bytes(ref)
    assert not (out / shard_worker.WORK_DIR).exists()


def test_resume_after_interruption_inside_a_shard(photos, ref, tmp_path, monkeypatch):
    out, calls = tmp_path / "out", []
    real = shard_worker.encode_sample

    def flaky(*args):
        calls.append(1)
        if len(calls) == 2 * SHARD + 2:  # in the middle of the third shard
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(shard_worker, "encode_sample", flaky)
    with pytest.raises(KeyboardInterrupt):
        ws.write_shards(photos.src, out, **KW)
    assert sorted(p.name for p in out.glob("shard-*.tar")) == ["shard-000000.tar",
                                                               "shard-000001.tar"]  # fmt: skip
    assert not _leftovers(out) and not (out / "manifest.json").exists()
    monkeypatch.setattr(shard_worker, "encode_sample", real)
    # a torn record / a stray temp file of a killed run must not confuse the resume
    shard_worker.record_path(out, 1).write_text("{not json")
    (out / ".shard-000002.tar.tmp-99999").write_bytes(b"partial")
    res = ws.write_shards(photos.src, out, **KW)
    assert res.shards_reused == 1
    assert _shard_bytes(out) == _shard_bytes(ref) and not _leftovers(out)


def test_rerun_reuses_and_other_parameters_need_overwrite(photos, ref, tmp_path):
    assert ws.write_shards(photos.src, ref, **KW).reused
    with pytest.raises(FileExistsError, match="--overwrite"):
        ws.write_shards(photos.src, ref, resolution=RES, shard_size=SHARD + 1)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        ws.write_shards(photos.src, out, on_shard=_stop_after(1), **KW)
    with pytest.raises(FileExistsError, match="unfinished run with other parameters"):
        ws.write_shards(photos.src, out, resolution=RES, shard_size=SHARD, seed=1)
    res = ws.write_shards(photos.src, out, resolution=RES, shard_size=SHARD, seed=1, overwrite=True)
    assert res.shards_reused == 0 and res.num_samples == photos.num_kept
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        ws.write_shards(photos.src, tmp_path / "foreign", overwrite=True, **KW)


def test_class_map_and_selection(photos, tmp_path):
    folders = photos.class_folders[::-1]  # reversed label order, human names
    mapping = {f: {"index": i, "name": f"name of {f}"} for i, f in enumerate(folders)}
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    chosen = sorted(photos.kept)[::2]
    sel = write_selection(tmp_path / "sel.txt", ["train/" + chosen[0], *chosen[1:], "gone/x.jpg"])
    res = ws.write_shards(photos.src, tmp_path / "out", class_map=tmp_path / "map.json",
                          select=sel, **KW)  # fmt: skip
    manifest, samples = _samples(tmp_path / "out")
    assert res.num_samples == len(chosen) == len(samples)
    assert manifest["class_names"] == [f"name of {f}" for f in folders]
    assert manifest["class_folders"] == folders
    assert manifest["skipped"]["selected_not_found"] == 1
    assert manifest["source"]["selection"]["kept"] == len(chosen)
    for s in samples:
        rel = json.loads(s["meta.json"])["source"]
        assert folders[int(s["cls"])] == rel.split("/")[0] and rel in chosen


def test_separate_depth_root_and_flat_folder(tmp_path):
    ds = make_photo_dataset(tmp_path / "src", per_class=1, odd_files=False, depth=tmp_path / "d")
    res = ws.write_shards(tmp_path / "src", tmp_path / "tree", depth_dir=tmp_path / "d", **KW)
    assert res.num_samples == ds.num_kept == 5
    flat, flat_depth = tmp_path / "flat", tmp_path / "flat_depth"
    flat.mkdir(), flat_depth.mkdir()
    for rel in ds.kept:  # SDIP-style: one folder, no classes, depth in a folder of its own
        name = rel.replace("/", "_")
        (flat / name).write_bytes((ds.image_root / rel).read_bytes())
        (flat_depth / depth_relpath(name)).write_bytes(
            (tmp_path / "d" / depth_relpath(rel)).read_bytes()
        )
    res = ws.write_shards(flat, tmp_path / "out", depth_dir=flat_depth, **KW)
    manifest = common.read_manifest(tmp_path / "out")
    assert res.num_samples == 5 and manifest["class_counts"] == [5]
    assert (manifest["num_classes"], manifest["class_names"]) == (1, ["flat"])
    assert manifest["source"]["layout"] == "flat folder"
    with pytest.raises(common.DatasetFormatError, match="every image"):
        ws.write_shards(flat, tmp_path / "none", **KW)  # no depth beside the images
    assert not (tmp_path / "none" / "manifest.json").exists()


def test_cli(photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        ws.main(["--help"])
    assert exc.value.code == 0 and "--depth-dir" in capsys.readouterr().out
    args = [str(photos.src), "--out", str(tmp_path / "o"), "--resolution", "24", "--quiet",
            "--workers", "0", "--format", "jpg", "--no-meta", "--min-size", "6"]  # fmt: skip
    assert ws.main(args) == 0
    manifest = common.read_manifest(tmp_path / "o")
    assert manifest["keys"] == ["jpg", "depth.png", "cls"] and manifest["resolution"] == 24
    assert manifest["num_samples"] == photos.num_kept
    capsys.readouterr()
    assert ws.main(args) == 0 and "reusing" in capsys.readouterr().out
    assert ws.main([str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_unexpected_error_on_one_image_is_counted_not_fatal(photos, tmp_path, monkeypatch):
    real = shard_worker.load_rgb_and_mode

    def broken_decoder(path, min_size):
        if path.name.startswith("cat_00"):
            raise RuntimeError("decoder bug")
        return real(path, min_size)

    monkeypatch.setattr(shard_worker, "load_rgb_and_mode", broken_decoder)
    res = ws.write_shards(photos.src, tmp_path / "out", **KW)
    assert res.num_samples == photos.num_kept - 1 and res.skipped["error"] == 1
    assert "RuntimeError: decoder bug" in (tmp_path / "out" / "skipped.txt").read_text()


def test_depth_maps_remade_in_the_same_folder_are_not_reused(tmp_path):
    """estimate_depth --overwrite into the same --depth-dir changes the shards' input: neither a
    finished dataset nor the shards of an interrupted run may be reused silently."""
    make_photo_dataset(tmp_path / "src", per_class=1, odd_files=False, depth=tmp_path / "d")
    info = tmp_path / "d" / "depth_info.json"
    info.write_text(json.dumps({"estimator": {"source": "model-a"}, "num_maps": 5}))
    kw = dict(depth_dir=tmp_path / "d", **KW)
    ws.write_shards(tmp_path / "src", tmp_path / "out", **kw)
    info.write_text(json.dumps({"estimator": {"source": "model-b"}, "num_maps": 5}))
    with pytest.raises(FileExistsError, match="--overwrite"):
        ws.write_shards(tmp_path / "src", tmp_path / "out", **kw)
    res = ws.write_shards(tmp_path / "src", tmp_path / "out", overwrite=True, **kw)
    assert not res.reused and res.shards_reused == 0
    manifest = common.read_manifest(tmp_path / "out")
    assert manifest["depth"]["estimate"]["estimator"] == {"source": "model-b"}
    with pytest.raises(KeyboardInterrupt):
        ws.write_shards(tmp_path / "src", tmp_path / "cut", on_shard=_stop_after(1), **kw)
    info.write_text(json.dumps({"estimator": {"source": "model-c"}, "num_maps": 5}))
    with pytest.raises(FileExistsError, match="unfinished run with other parameters"):
        ws.write_shards(tmp_path / "src", tmp_path / "cut", **kw)
