"""write_shards --parts N --part I + merge_parts: same dataset as one machine, clear errors."""

import json
import tarfile

import pytest

from data_prep import common, merge_parts, validate
from data_prep import write_shards as ws
from data_prep.shards import parts as shard_parts
from data_prep.shards import worker as shard_worker
from gp3d.data.datamodule import GP3DDataModule
from tests.photo_dataset import make_photo_dataset

RES, SHARD = 32, 4
KW = dict(resolution=RES, shard_size=SHARD)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photo_dataset(tmp_path_factory.mktemp("photos") / "src", train_subdir=True)


@pytest.fixture(scope="module")
def ref(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "shards"
    ws.write_shards(photos.src, out, **KW)
    return out


def _samples(folder):
    """{key: {ext: bytes}} of every sample of a finished dataset, read from its tars."""
    manifest = common.read_manifest(folder, verify_checksums=True)
    samples = {}
    for path in common.shard_paths(folder, manifest):
        with tarfile.open(path) as tar:
            for m in tar:
                key, ext = m.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return samples


def _tars(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.tar"))}


def _leftovers(folder):
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


@pytest.mark.parametrize("n", [1, 3, 7, 20])
def test_part_shards_are_disjoint_and_cover_every_shard(n):
    for num_shards in (0, 1, 5, 19):
        blocks = [shard_parts.part_shards(num_shards, n, i) for i in range(n)]
        assert [i for b in blocks for i in b] == list(range(num_shards))
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    with pytest.raises(ValueError, match="--part"):
        shard_parts.part_shards(5, n, n)


def test_two_parts_merged_equal_one_run(photos, ref, tmp_path):
    out = tmp_path / "parts"
    # part 1 first (parts finish in any order); part 0 is interrupted after one shard
    r1 = ws.write_shards(photos.src, out, parts=2, part=1, **KW)
    with pytest.raises(KeyboardInterrupt):
        ws.write_shards(photos.src, out, parts=2, part=0, on_shard=_stop_after(1), **KW)
    assert not (out / "manifest.json").exists() and not _leftovers(out)
    # nobody can read the folder before the merge, and the merge names the missing part
    report = validate.validate(out)
    assert not report.ok and "1 of 2 parts finished" in report.problems[0]
    assert "still running or to run: 0" in report.problems[0]
    with pytest.raises(common.DatasetNotFoundError, match="merge_parts"):
        GP3DDataModule(str(out), batch_size=2).manifest  # noqa: B018
    with pytest.raises(merge_parts.PartsIncompleteError, match=r"part 0 \(part-00000-of-00002"):
        merge_parts.merge_parts(out)
    r0 = ws.write_shards(photos.src, out, parts=2, part=0, **KW)  # resume: reuses its shard
    assert r0.shards_reused == 1 and r0.num_samples + r1.num_samples == photos.num_kept
    tars = _tars(ref)
    assert r0.shards_reused + r0.shards_written + r1.shards_written == len(tars)
    assert merge_parts.main([str(out)]) == 0
    # same shard files byte for byte, hence the same samples; the same manifest
    assert _tars(out) == tars
    assert _samples(out) == _samples(ref)
    merged, single = (json.loads((f / "manifest.json").read_text()) for f in (out, ref))
    assert merged.pop("parts") == {"count": 2, "merged_by": "data_prep.merge_parts"}
    assert merged == single
    assert (out / "skipped.txt").read_text() == (ref / "skipped.txt").read_text()
    assert validate.validate(out, full=True).ok
    assert not (out / shard_worker.WORK_DIR).exists()
    assert merge_parts.main([str(out)]) == 0  # merging again is a no-op
    assert ws.write_shards(photos.src, out, parts=2, part=0, **KW).reused


def _stop_after(k):
    def on_shard(done, total):
        if done == k:
            raise KeyboardInterrupt

    return on_shard


def test_a_missing_part_is_named_at_merge(photos, tmp_path, capsys):
    out = tmp_path / "parts"
    for i in (0, 2):
        ws.write_shards(photos.src, out, parts=3, part=i, **KW)
    assert merge_parts.main([str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 of 3 parts have not finished: part 1 (part-00001-of-00003.json)" in err
    assert not (out / "manifest.json").exists()
    # a shard of a finished part deleted afterwards is named too
    ws.write_shards(photos.src, out, parts=3, part=1, **KW)
    victim = sorted(out.glob("shard-*.tar"))[-1]
    victim.unlink()
    with pytest.raises(merge_parts.PartsIncompleteError, match=f"part 2: shard .*{victim.name}"):
        merge_parts.merge_parts(out)
    assert not (out / "manifest.json").exists()


def test_changed_parts_or_settings_are_errors(photos, tmp_path, capsys):
    out = tmp_path / "parts"
    ws.write_shards(photos.src, out, parts=2, part=0, **KW)
    argv = [str(photos.src), "--out", str(out), "--resolution", str(RES), "--shard-size",
            str(SHARD), "--workers", "0", "--quiet", "--parts", "3", "--part", "1"]  # fmt: skip
    assert ws.main(argv) == 1
    err = capsys.readouterr().err
    assert "started with --parts 2, this run says --parts 3" in err
    with pytest.raises(shard_parts.PartsMismatchError, match="'seed'"):
        ws.write_shards(photos.src, out, parts=2, part=1, seed=1, **KW)
    with pytest.raises(FileExistsError, match="--parts 2"):  # a single-machine run
        ws.write_shards(photos.src, out, **KW)
    with pytest.raises(ValueError, match="--overwrite cannot be combined"):
        ws.write_shards(photos.src, out, parts=2, part=1, overwrite=True, **KW)
    with pytest.raises(ValueError, match="go together"):
        ws.write_shards(photos.src, out, parts=2, **KW)
    with pytest.raises(common.DatasetNotFoundError, match="no `write_shards --parts` run"):
        merge_parts.merge_parts(tmp_path / "elsewhere")
