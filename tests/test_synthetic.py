"""The embedded synthetic dataset: camera convention, determinism, depth, shards, CLI, atomicity."""

import io
import json
import math
import tarfile
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from data_prep import common
from data_prep.synthetic import dataset as synthetic
from data_prep.synthetic.depth import simulate_monocular_depth
from data_prep.synthetic.scenes import FAR, NEAR, render, sample_cameras, sample_scenes
from data_prep.synthetic.shapes import CLASS_NAMES
from gp3d.types import CAMERA_FIELDS, CameraParams


def _camera(yaw=0.0, pitch=math.pi / 2, radius=1.0, fov=30.0) -> CameraParams:
    t = lambda v: torch.tensor([float(v)])  # noqa: E731
    return CameraParams(t(yaw), t(pitch), t(0), t(radius), t(fov), t(0), t(0), t(0))


def _sphere(center, radius):
    scene = sample_scenes(0, [CLASS_NAMES.index("sphere")])
    return replace(
        scene,
        center=torch.tensor([center]),
        scale=torch.tensor([radius]),
        rotation=torch.eye(3)[None],
    )


def _read_shard(path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return samples


def test_sphere_depth_matches_camera_convention():
    # On the optical axis (odd resolution: the centre pixel's ray is the axis): depth = 1 - r.
    _, depth = render(_sphere([0.0, 0.0, 0.0], 0.2), _camera(), 33)
    assert depth[0, 0, 16, 16].item() == pytest.approx(0.8, abs=1e-3)
    assert depth[0, 0, 0, 0].item() == FAR  # a corner ray misses: background at far
    # yaw = pi/2 puts the camera at (-1, 0, 0) (spec 3.2); a sphere on -x is 0.8 - 0.1 away.
    _, depth = render(_sphere([-0.1, 0.0, 0.0], 0.1), _camera(yaw=math.pi / 2), 33)
    assert depth[0, 0, 16, 16].item() == pytest.approx(0.8, abs=1e-3)
    # Off axis, fov 90: row 12 / column 20 of 33 is the pixel centre (x, y) = (0.25, +0.25),
    # i.e. right and *up* (y up, rows top to bottom). A sphere 1.0 along that ray: depth 0.9.
    ray = torch.nn.functional.normalize(torch.tensor([0.25, 0.25, -1.0]), dim=0)
    center = (torch.tensor([0.0, 0.0, 1.0]) + ray).tolist()
    _, depth = render(_sphere(center, 0.1), _camera(fov=90.0), 33)
    assert depth[0, 0, 12, 20].item() == pytest.approx(0.9, abs=1e-3)
    assert depth[0, 0, 20, 12].item() == FAR and depth[0, 0, 16, 16].item() == FAR


def test_every_class_renders_inside_the_box_and_depth_range():
    n = len(CLASS_NAMES)
    assert n >= 8
    scenes = sample_scenes(1, torch.arange(n).repeat(3))
    cams = sample_cameras(2, 3 * n, fov_range=(45.0, 45.0), max_look_at_radius=0.0)
    plain = (0.123, 0.456, 0.789)
    rgb, depth = render(scenes, cams, 24, background="plain", plain_color=plain)
    assert rgb.shape == (3 * n, 3, 24, 24) and depth.shape == (3 * n, 1, 24, 24)
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert depth.min() >= NEAR and depth.max() <= FAR
    background = (rgb == torch.tensor(plain)[:, None, None]).all(1, keepdim=True)
    assert (depth[background] == FAR).all()  # background depth is exactly far
    assert (depth[~background] < FAR).float().mean() > 0.99
    assert ((~background).flatten(1).float().mean(1) > 0.01).all()  # every object is visible
    # objects fit the model's scene box [-0.5, 0.5]^3 (bounding sphere: |centre| + scale)
    assert (scenes.center.norm(dim=1) + scenes.scale).max() < 0.5


def test_render_is_deterministic_and_seed_dependent():
    a = synthetic.render_shard_samples(seed=3, shard_index=0, start=0, count=6, resolution=16)
    b = synthetic.render_shard_samples(seed=3, shard_index=0, start=0, count=6, resolution=16)
    c = synthetic.render_shard_samples(seed=4, shard_index=0, start=0, count=6, resolution=16)
    assert a == b
    assert all(x["png"] != y["png"] for x, y in zip(a, c))


def test_monocular_estimate_is_monotone_but_not_affine():
    g = torch.Generator().manual_seed(0)
    scenes, cams = sample_scenes(g, torch.arange(20) % len(CLASS_NAMES)), sample_cameras(g, 20)
    _, depth = render(scenes, cams, 32)
    est = simulate_monocular_depth(depth, g)
    assert torch.allclose(est.amax(dim=(1, 2, 3)), torch.ones(20))  # per-image normalised
    assert est.min() > 0
    rank = lambda v: v.argsort().argsort().double()  # noqa: E731
    spearman, r2 = [], []
    for d, e in zip(depth, est):
        fg = d < FAR - 1e-4  # the background is one big tie in GT: rank the object only
        if fg.sum() >= 20:
            x, y = d[fg].double(), e[fg].double()
            spearman.append(torch.corrcoef(torch.stack([rank(x), rank(y)]))[0, 1].item())
        r2.append(torch.corrcoef(torch.stack([d.flatten(), e.flatten()]))[0, 1].item() ** 2)
    assert np.median(spearman) > 0.85, spearman
    assert max(r2) < 0.999  # a real distortion, not an affine map of GT
    fg = depth < FAR - 1e-4  # larger estimate = farther
    assert est[~fg].mean() > est[fg].mean()


def test_generated_shards_manifest_and_true_cameras(tmp_path):
    out = tmp_path / "syn"
    assert synthetic.generate_dataset(out, num_samples=30, resolution=16, seed=5, shard_size=12)
    manifest = common.read_manifest(out, verify_checksums=True)
    assert manifest["num_samples"] == 30 and manifest["resolution"] == 16
    assert [s["num_samples"] for s in manifest["shards"]] == [12, 12, 6]
    assert manifest["class_names"] == list(CLASS_NAMES) and sum(manifest["class_counts"]) == 30
    assert manifest["keys"] == ["png", "depth.png", "cls", "depth_gt.npy", "camera.json"]
    assert manifest["embedding_dim"] is None and manifest["seed"] == 5
    samples = _read_shard(out / "shard-000000.tar")
    assert sorted(samples) == [f"{i:08d}" for i in range(12)]
    cams, gts = [], []
    for _, s in sorted(samples.items()):
        img = np.asarray(Image.open(io.BytesIO(s["png"])))
        raw = np.asarray(Image.open(io.BytesIO(s["depth.png"])))
        gt = np.load(io.BytesIO(s["depth_gt.npy"]))
        assert img.shape == (16, 16, 3) and img.dtype == np.uint8
        assert raw.dtype == np.uint16 and raw.max() == common.DEPTH_MAX_VALUE
        assert gt.dtype == np.float16 and gt.min() >= NEAR and gt.max() <= FAR
        assert 0 <= int(s["cls"]) < len(CLASS_NAMES)
        cam = json.loads(s["camera.json"])
        assert set(cam) == set(CAMERA_FIELDS)
        cams.append([cam[k] for k in CAMERA_FIELDS])
        gts.append(gt)
    # The stored cameras are the true ones: re-rendering the shard's scenes with them gives the
    # stored ground-truth depth.
    g = torch.Generator().manual_seed(synthetic._shard_seed(5, 0))
    labels = torch.randint(0, len(CLASS_NAMES), (12,), generator=g)
    assert labels.tolist() == [int(samples[k]["cls"]) for k in sorted(samples)]
    _, depth = render(sample_scenes(g, labels), CameraParams.from_tensor(torch.tensor(cams)), 16)
    assert np.allclose(depth[:, 0].numpy(), np.stack(gts).astype(np.float32), atol=2e-3)


def test_cli_creates_reuses_refuses_and_overwrites(tmp_path, capsys):
    out = str(tmp_path / "d")
    args = ["--out", out, "--num-samples", "8", "--resolution", "8", "--shard-size", "5"]
    assert synthetic.main(args) == 0
    first = (tmp_path / "d" / "shard-000000.tar").read_bytes()
    assert synthetic.main(args) == 0
    assert "reusing" in capsys.readouterr().out
    assert synthetic.main([*args, "--seed", "1"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert synthetic.main([*args, "--seed", "1", "--overwrite"]) == 0
    assert common.read_manifest(out)["seed"] == 1
    assert (tmp_path / "d" / "shard-000000.tar").read_bytes() != first
    mtime = (tmp_path / "d" / "manifest.json").stat().st_mtime_ns
    assert synthetic.ensure_synthetic_dataset(out, 8, 8, seed=1, shard_size=5) == tmp_path / "d"
    assert (tmp_path / "d" / "manifest.json").stat().st_mtime_ns == mtime  # reused, not rewritten
    with pytest.raises(FileExistsError, match="--overwrite"):
        synthetic.ensure_synthetic_dataset(out, 8, 8, seed=2, shard_size=5)
    with pytest.raises(SystemExit) as exc:
        synthetic.main(["--help"])
    assert exc.value.code == 0


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_interrupted_generation_leaves_no_shard_or_manifest(tmp_path):
    out = tmp_path / "d"

    def interrupt(done, total):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthetic.generate_dataset(out, 12, 8, shard_size=4, on_shard=interrupt)
    assert _leftovers(out) == []
    with pytest.raises(common.DatasetNotFoundError, match="is empty"):
        common.read_manifest(out)


def test_failure_midway_keeps_the_previous_dataset_intact(tmp_path, monkeypatch):
    out = tmp_path / "d"
    synthetic.generate_dataset(out, 6, 8, shard_size=3)
    before = _leftovers(out)
    real, calls = synthetic.render_shard_samples, []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(*args)

    monkeypatch.setattr(synthetic, "render_shard_samples", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        synthetic.generate_dataset(out, 6, 8, seed=9, shard_size=3, overwrite=True)
    assert _leftovers(out) == before
    assert common.read_manifest(out, verify_checksums=True)["seed"] == 0


def test_atomic_shard_writer_removes_temp_on_error(tmp_path):
    path = tmp_path / "shard-000000.tar"
    with pytest.raises(ValueError), common.AtomicShardWriter(path) as w:
        w.write({"__key__": "a", "cls": "1"})
        w.write({"__key__": "bad.key", "cls": "1"})
    assert _leftovers(tmp_path) == []
