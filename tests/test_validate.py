"""data_prep.validate: a good shard set passes; each kind of damage is found and reported."""

import io
import json
import shutil
import tarfile

import pytest

from data_prep import common, validate
from data_prep import write_shards as ws
from tests.photo_dataset import make_photo_dataset


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    photos = make_photo_dataset(root / "src", per_class=2, odd_files=True)
    ws.write_shards(photos.src, root / "shards", resolution=32, shard_size=5)
    return root / "shards"


@pytest.fixture
def copy(good, tmp_path):
    return shutil.copytree(good, tmp_path / "copy")


def _edit_manifest(folder, change):
    path = folder / common.MANIFEST_NAME
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_good_dataset_passes(good, capsys):
    report = validate.validate(good, full=True)
    manifest = common.read_manifest(good)
    assert report.ok, report.problems
    assert report.num_samples == report.decoded == manifest["num_samples"]
    assert validate.main([str(good), "--full", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and f"{manifest['num_samples']} samples" in out


def test_damaged_shards_are_reported(copy, capsys):
    shards = sorted(copy.glob("shard-*.tar"))
    with open(shards[0], "r+b") as f:  # same size, different bytes
        f.seek(700)
        f.write(b"\xff")
    shards[1].unlink()
    with open(shards[2], "ab") as f:
        f.write(b"junk")
    shutil.copy(shards[3], copy / "shard-000999.tar")  # unlisted: a warning only
    report = validate.validate(copy)
    text = "\n".join(report.problems)
    assert f"{shards[0].name}: sha256 differs" in text
    assert f"{shards[1].name}: missing" in text
    assert f"{shards[2].name}: " in text and "bytes, manifest says" in text
    assert any("shard-000999.tar" in w for w in report.warnings)
    assert validate.main([str(copy)]) == 1
    assert "problem(s)" in capsys.readouterr().err


def test_manifest_disagreements_are_reported(copy):
    _edit_manifest(copy, lambda m: m["shards"][0].update(num_samples=m["shards"][0]["num_samples"] + 1)
                   or m.update(num_samples=m["num_samples"] + 1))  # fmt: skip
    assert any("samples, manifest says" in p for p in validate.validate(copy).problems)
    _edit_manifest(copy, lambda m: m.update(resolution=64))
    problems = validate.validate(copy, full=True).problems
    assert any("not RGB 64^2" in p for p in problems) and any(
        "depth is 32x32" in p for p in problems
    )
    _edit_manifest(copy, lambda m: m.pop("shards"))
    assert "lacks fields" in validate.validate(copy).problems[0]
    (copy / common.MANIFEST_NAME).unlink()
    assert "not a finished dataset" in validate.validate(copy).problems[0]


def test_bad_samples_are_reported(copy):
    manifest = common.read_manifest(copy)
    shard = copy / manifest["shards"][0]["name"]
    members = []
    with tarfile.open(shard) as tar:
        for m in tar:
            members.append((m, tar.extractfile(m).read()))
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, data in members:
            if m.name.endswith(".cls"):
                data = b"99"  # out of range
            elif m.name.endswith(".depth.png"):
                data = b"not a png"
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    _edit_manifest(copy, lambda m: m["shards"][0].update(bytes=shard.stat().st_size,
                                                         sha256=common.file_sha256(shard)))  # fmt: skip
    problems = validate.validate(copy, full=True).problems
    assert any("cls '99' is not in [0, 5)" in p for p in problems)
    assert any("does not decode" in p for p in problems)
    assert validate.validate(copy, full=False).problems  # class counts disagree already
