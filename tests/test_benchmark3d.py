"""Held-out ground truth (novel views) and ``python -m gp3d.benchmark3d`` end to end."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from data_prep.synthetic import dataset as synthetic
from data_prep.synthetic.scenes import render, sample_scenes
from data_prep.synthetic.shapes import CLASS_NAMES
from gp3d.benchmark3d import main
from gp3d.data.format import DatasetFormatError
from gp3d.data.truth import load_ground_truth
from gp3d.eval3d.heldout import ensure_heldout_split
from tests.tiny_generator import save_tiny_generator


def test_novel_views_leave_the_base_samples_unchanged():
    base = synthetic.render_shard_samples(3, 0, 0, 4, 16)
    more = synthetic.render_shard_samples(3, 0, 0, 4, 16, novel_views=2)
    for a, b in zip(base, more):
        assert set(b) - set(a) == set(synthetic.NOVEL_KEYS)
        assert all(a[k] == b[k] for k in a)  # bit-identical base keys


def test_heldout_round_trip_novel_view_matches_a_rerender(tmp_path):
    """The split is made through conf/data/synthetic.yaml's prepare node; its novel views are
    renders of the same scene from the stored true cameras."""
    seed, res = 11, 16
    path = ensure_heldout_split(tmp_path / "ho", res, 5, seed, novel_views=2)
    gt = load_ground_truth(path)
    assert gt.image.shape == (5, 3, res, res) and gt.novel_image.shape == (5, 2, 3, res, res)
    assert gt.novel_depth.shape == (5, 2, 1, res, res) and gt.novel_camera.batch_size == 10
    assert not torch.allclose(gt.novel_camera.yaw[::2], gt.camera.yaw)  # other cameras
    torch.testing.assert_close(gt.novel_camera.fov[::2], gt.camera.fov)  # orbiting the same view
    g = torch.Generator().manual_seed(synthetic._shard_seed(seed, 0))
    labels = torch.randint(0, len(CLASS_NAMES), (5,), generator=g)
    assert torch.equal(labels, gt.label)
    scenes = sample_scenes(g, labels)
    rgb, depth = render(scenes[torch.arange(5).repeat_interleave(2)], gt.novel_camera, res)
    assert np.allclose(depth.reshape(5, 2, 1, res, res), gt.novel_depth, atol=2e-3)
    assert (rgb.reshape(5, 2, 3, res, res) * 2 - 1 - gt.novel_image).abs().max() < 1.5 / 255
    _, base_depth = render(scenes, gt.camera, res)  # and the base view's truth too
    assert np.allclose(base_depth, gt.depth, atol=2e-3)
    with pytest.raises(ValueError, match="training data's seed"):
        ensure_heldout_split(tmp_path / "x", res, 5, seed, 1, train_seed=seed)


def test_ground_truth_without_novel_views_names_the_fix(tmp_path):
    synthetic.generate_dataset(tmp_path / "plain", num_samples=2, resolution=8)
    assert load_ground_truth(tmp_path / "plain", novel_views=False).depth.shape == (2, 1, 8, 8)
    with pytest.raises(DatasetFormatError, match="novel_views"):
        load_ground_truth(tmp_path / "plain")


def test_benchmark3d_end_to_end(tmp_path, capsys):
    ckpt = save_tiny_generator(tmp_path, tmp_path / "g.pt", c_dim=len(CLASS_NAMES))
    out = tmp_path / "bench"
    common = [
        str(ckpt), "--out", str(out), "--heldout-dir", str(tmp_path / "ho"), "--num-heldout", "4",
        "--num-fakes", "4", "--num-nfs", "2", "--batch-size", "2", "--feature-net", "random:16",
        "--no-progress",
    ]  # fmt: skip
    args = [*common, "--num-invert", "1", "--w-steps", "2", "--g-steps", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "benchmark3d.json").read_text())
    u, r = report["unconditional"], report["reconstruction"]
    assert u["num_fakes"] == 4 and u["num_reals"] == 4 and u["nfs"] >= 1
    assert 0 <= u["depth_w1"] <= 1 and 0 < u["foreground_fraction_true"] < 1
    assert r["num_images"] == 1 and len(r["per_image"]["abs_rel"]) == 1
    assert r["abs_rel"] >= 0 and r["novel_ssim"] <= 1 and r["novel_lpips"] >= 0
    assert 0 < r["input_psnr"] <= 100 and r["input_lpips"] >= 0  # the input view itself
    assert r["abs_rel_flat"] > 0 and u["nfs_true"] > 1  # references: a billboard, the data
    assert r["shape_err_flat"] == pytest.approx(1.0) and r["depth_corr_flat"] == 0.0
    assert 0 <= r["shape_err"] <= 1 and -1 <= r["depth_corr"] <= 1
    for label in (
        "KID",
        "depth W1 vs true",
        "recon AbsRel",
        "recon shape error",
        "novel view PSNR",
    ):
        assert label in printed
    panel = np.asarray(Image.open(out / "benchmark3d.png"))
    assert panel.shape[0] > 6 * 128 and panel.shape[1] > 2 * 120 and panel.std() > 0
    # reusing the split, without inversion: no reconstruction section
    assert main([*common, "--no-invert"]) == 0
    before = json.loads((out / "benchmark3d.json").read_text())
    assert "reconstruction" not in before
    # --only-reconstruction: step 4 redone into the existing report, the sample scores kept
    args = [*common, "--num-invert", "2", "--w-steps", "1", "--g-steps", "1"]
    assert main([*args, "--only-reconstruction"]) == 0
    updated = json.loads((out / "benchmark3d.json").read_text())
    assert updated["unconditional"] == before["unconditional"]
    assert (
        updated["reconstruction"]["num_images"] == 2 and updated["reconstruction"]["w_steps"] == 1
    )
    assert updated.get("classes") == before.get("classes") and set(before["notes"]) <= set(
        updated["notes"]
    )
    assert 0 <= updated["reconstruction"]["shape_err"] <= 1
    capsys.readouterr()
    # ... and refused where it would mix two models' scores, or has nothing to update
    other = save_tiny_generator(tmp_path, tmp_path / "other.pt", c_dim=len(CLASS_NAMES))
    assert main([str(other), *args[1:], "--only-reconstruction"]) == 2
    assert "rerun the full benchmark" in capsys.readouterr().err
    args[2] = str(tmp_path / "empty")
    assert main([*args, "--only-reconstruction"]) == 2
    assert "does not exist" in capsys.readouterr().err
