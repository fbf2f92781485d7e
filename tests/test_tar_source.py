"""write_shards on a folder of WebDataset / img2dataset tars: read in place, labels, damage."""

import io
import json
import tarfile
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from data_prep import common, tar_source
from data_prep import estimate_depth as ed
from data_prep import write_shards as ws
from data_prep.folder_source import depth_relpath

RES, SHARD = 16, 3
WNIDS = ("n02_cat", "n01_dog", "n03_fish")


def _jpeg(rng, h, w):
    base = rng.integers(0, 255, (h // 4, w // 4, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def tars(tmp_path_factory):
    """Two good tars (img2dataset layout + cls), a corrupt member, a key without labels, a
    damaged tar; the same good images as class folders, for comparison."""
    root = tmp_path_factory.mktemp("tars")
    src, depth, folders = root / "src", root / "depth", root / "folders"
    rng = np.random.default_rng(0)
    expected = {}  # relpath -> wnid of the images that must be kept
    src.mkdir()
    for t in range(2):
        with tarfile.open(src / f"{t:05d}.tar", "w") as tar:
            for k in range(4):
                key, wnid = f"{t:05d}{k:04d}", WNIDS[(t * 4 + k) % 3]
                image, (h, w) = _jpeg(rng, 40 + 8 * k, 48), (40 + 8 * k, 48)
                _add(tar, f"{key}.jpg", image)
                _add(tar, f"{key}.json", json.dumps({"key": key, "wnid": wnid}).encode())
                _add(tar, f"{key}.txt", b"a caption")
                _add(tar, f"{key}.cls", str(WNIDS.index(wnid)).encode())
                rel = f"{t:05d}.tar/{key}.jpg"
                expected[rel] = wnid
                depth_png = common.encode_relative_depth(rng.uniform(1, 5, (h, w)))
                for path, data in ((depth / depth_relpath(rel), depth_png),
                                   (folders / wnid / f"{key}.jpg", image),
                                   (folders / wnid / f"{key}_depth.png", depth_png)):  # fmt: skip
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
            if t == 1:
                _add(tar, "bad0001.jpg", b"not a jpeg at all")  # corrupt member
                _add(tar, "bad0001.cls", b"0")
                _add(tar, "nolabel.jpg", _jpeg(rng, 32, 32))  # no cls member
    # damaged tars: cut inside a member's data, and cut at a member boundary
    good = (src / "00000.tar").read_bytes()
    (src / "00002.tar").write_bytes(good[:2000])
    (src / "00003.tar").write_bytes(good[: 512 * 3])  # header + 1 block of data; EOF at a header
    (depth / "depth_info.json").write_text("{}")
    return src, depth, folders, expected


def _samples(folder):
    manifest = common.read_manifest(folder, verify_checksums=True)
    samples = {}
    for path in common.shard_paths(folder, manifest):
        with tarfile.open(path) as tar:
            for m in tar:
                key, ext = m.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return manifest, list(samples.values())


def test_tars_are_read_in_place_with_cls_labels(tars, tmp_path):
    src, depth, folders, expected = tars
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    out = tmp_path / "out"
    res = ws.write_shards(src, out, resolution=RES, shard_size=SHARD, depth_dir=depth)
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before  # nothing unpacked
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", "skipped.txt"] + [f"shard-{i:06d}.tar" for i in range(3)]
    )
    manifest, samples = _samples(out)
    assert res.num_samples == len(expected) == len(samples)
    assert manifest["source"]["layout"] == "tars"
    assert manifest["class_names"] == ["0", "1", "2"]  # integer cls values are indices
    got = {json.loads(s["meta.json"])["source"]: int(s["cls"]) for s in samples}
    assert got == {rel: WNIDS.index(w) for rel, w in expected.items()}
    # corrupt member (named by tar and key), key without a label, damaged tar: skipped, counted
    assert manifest["skipped"] == {"no_label": 1, "unreadable": 1, "unreadable_tar": 2}
    rows = [line.split("\t") for line in (out / "skipped.txt").read_text().splitlines()[1:]]
    reasons = {r[0]: r[1] for r in rows}
    assert reasons == {"00001.tar/bad0001.jpg": "unreadable", "00001.tar/nolabel.jpg": "no_label",
                       "00002.tar": "unreadable_tar", "00003.tar": "unreadable_tar"}  # fmt: skip
    assert "ReadError" in next(r[2] for r in rows if r[0] == "00002.tar")
    # the same images as class folders give the same sample contents (keys and order differ)
    ref = ws.write_shards(folders, tmp_path / "ref", resolution=RES, shard_size=SHARD)
    _, ref_samples = _samples(ref.path)

    def content(ss):
        return Counter((s["png"], s["depth.png"]) for s in ss)

    assert content(samples) == content(ref_samples)


def test_labels_from_a_json_field_and_a_class_map(tars, tmp_path):
    src, depth, _, expected = tars
    out = tmp_path / "json"
    ws.main([str(src), "--out", str(out), "--resolution", str(RES), "--depth-dir", str(depth),
             "--label-key", "json:wnid", "--workers", "0", "--quiet"])  # fmt: skip
    manifest, samples = _samples(out)
    assert manifest["class_names"] == sorted(WNIDS)  # string values: their sorted set
    got = {json.loads(s["meta.json"])["source"]: int(s["cls"]) for s in samples}
    assert got == {rel: sorted(WNIDS).index(w) for rel, w in expected.items()}
    assert manifest["generator"]["params"]["label_key"] == "json:wnid"
    # a class map fixes the order and names; values it lacks are skipped as unknown
    cmap = tmp_path / "map.txt"
    cmap.write_text("n03_fish fish\nn02_cat cat\n")
    m2 = ws.write_shards(src, tmp_path / "map", resolution=RES, depth_dir=depth,
                         label_key="json:wnid", class_map=cmap)  # fmt: skip
    manifest2 = common.read_manifest(m2.path)
    assert manifest2["class_names"] == ["fish", "cat"]
    n_dog = sum(w == "n01_dog" for w in expected.values())
    assert manifest2["skipped"]["unknown_label"] == n_dog
    assert manifest2["class_counts"] == [sum(w == "n03_fish" for w in expected.values()),
                                         sum(w == "n02_cat" for w in expected.values())]  # fmt: skip


def test_no_labels_and_bad_label_key(tars, tmp_path):
    src, depth, _, expected = tars
    with pytest.raises(common.DatasetNotFoundError, match="--label-key none"):
        ws.write_shards(src, tmp_path / "x", resolution=RES, depth_dir=depth, label_key="json:nope")
    res = ws.write_shards(src, tmp_path / "one", resolution=RES, depth_dir=depth, label_key="none")
    manifest = common.read_manifest(res.path)
    assert manifest["num_classes"] == 1 and res.num_samples == len(expected)
    assert manifest["skipped"]["no_depth"] == 1  # the unlabelled image is now one (no depth map)
    with pytest.raises(ValueError, match="--label-key"):
        tar_source.scan_tar_folder(src, "caption")


def test_open_image_finds_members_by_name(tars):
    src, _, _, expected = tars
    rel = sorted(expected)[-1]
    data = tar_source.open_image(src, rel).read()
    with tarfile.open(src / rel.split("/")[0]) as tar:
        assert data == tar.extractfile(rel.split("/")[1]).read()


def test_depth_model_reads_tars_and_feeds_write_shards(tars, tmp_path, one_thread):
    src, _, _, expected = tars
    res = ed.estimate_depth(src, tmp_path / "d", model="random:depth-anything-tiny", batch_size=4)
    assert res.written == len(expected) + 1  # + the unlabelled image (depth needs no label)
    assert res.skipped == {"unreadable": 1}  # the corrupt member
    for rel in expected:  # maps mirror <tar>/<key>, at the image's size
        size = Image.open(tar_source.open_image(src, rel)).size
        assert Image.open(tmp_path / "d" / depth_relpath(rel)).size == size
    out = ws.write_shards(src, tmp_path / "s", resolution=RES, depth_dir=tmp_path / "d")
    assert out.num_samples == len(expected)
