"""Differentiable-rendering fit: free tri-planes reproduce a synthetic scene from known cameras.

This ties the model's cameras, rays, sampling and renderer to the dataset renderer: if any
convention disagreed (axes, pixel centres, fov, depth along the ray), the held-out view could not
be predicted.
"""

import math

import pytest
import torch

from data_prep.synthetic.scenes import render, sample_scenes
from gp3d.models.camera import generate_rays
from gp3d.models.renderer import VolumeRenderer
from gp3d.models.triplane import TriPlaneDecoder, sample_triplanes
from gp3d.types import CameraParams

RES = 24


def cams(yaws, pitches, fov=32.0):
    n = len(yaws)
    z = torch.zeros(n)
    return CameraParams(
        torch.tensor(yaws), torch.tensor(pitches), z, torch.ones(n), torch.full((n,), fov), z, z, z
    )


@pytest.mark.slow  # 220 optimisation steps, over 2 min on one core; the tri-plane axis
# convention itself is checked in a second by tests/test_triplane.py
def test_free_triplanes_fit_scene_and_generalise_to_held_out_view():
    torch.manual_seed(0)
    scene = sample_scenes(3, [0])  # class 0
    train_cams = cams(
        [-0.9, -0.45, 0.0, 0.45, 0.9, -0.7, 0.0, 0.7, -0.2, 0.3],
        [1.57, 1.57, 1.57, 1.57, 1.57, 1.15, 1.15, 1.15, 1.95, 1.95],
    )
    test_cams = cams([0.22, -0.6], [1.4, 1.75])

    def gt(c):
        rep = type(scene)(
            **{k: v.expand(c.batch_size, *v.shape[1:]) for k, v in vars(scene).items()}
        )
        rgb, depth = render(rep, c, RES, background="plain")
        return rgb * 2 - 1, depth

    rgb_tr, depth_tr = gt(train_cams)
    rgb_te, depth_te = gt(test_cams)

    planes = torch.nn.Parameter(torch.randn(1, 3, 8, 48, 48) * 0.1)
    decoder = TriPlaneDecoder(in_features=8, hidden_dim=32, num_layers=2)
    renderer = VolumeRenderer(near=0.75, far=1.25, num_coarse=16, num_fine=16, chunk_rays=0)
    opt = torch.optim.Adam([planes, *decoder.parameters()], lr=0.03)

    def draw(c):
        o, d = generate_rays(c, RES)
        field = lambda p: decoder(sample_triplanes(planes.expand(c.batch_size, -1, -1, -1, -1), p))  # noqa: E731
        rgb, depth, _ = renderer(field, o, d)
        shape = (c.batch_size, RES, RES, -1)
        return rgb.reshape(shape).permute(0, 3, 1, 2), depth.reshape(shape).permute(0, 3, 1, 2)

    with torch.no_grad():
        rgb0, _ = draw(test_cams)
    start_err = (rgb0 - rgb_te).square().mean()
    for step in range(220):
        idx = torch.randperm(train_cams.batch_size)[:5]
        rgb, depth = draw(train_cams[idx])
        loss = (rgb - rgb_tr[idx]).square().mean() + 4 * (depth - depth_tr[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 150:
            for g in opt.param_groups:
                g["lr"] = 0.01

    with torch.no_grad():
        rgb, depth = draw(test_cams)
    fg = depth_te < 1.2  # object pixels
    assert fg.float().mean() > 0.05, "the held-out views must see the object"
    mse = (rgb - rgb_te).square().mean()
    psnr = 10 * math.log10(4 / mse.item())  # images in [-1, 1]: peak-to-peak 2
    depth_err = (depth - depth_te).abs()[fg].mean()
    print(
        f"held-out mse {mse:.4f} (init {start_err:.4f}) psnr {psnr:.1f} depth_err {depth_err:.4f}"
    )
    assert mse < 0.15 * start_err, f"held-out RGB error {mse:.4f} vs {start_err:.4f} at init"
    assert psnr > 22.5, f"held-out PSNR {psnr:.1f} dB"
    assert depth_err < 0.03, f"held-out foreground depth error {depth_err:.4f}"
