"""GPU-only checks (``make test-gpu``; skipped without CUDA): the same render on CUDA as on CPU,
and a bf16-mixed training step on the GPU through the Hydra entry point."""

import pytest
import torch

from gp3d.train import train
from tests.helpers import TINY, compose_train
from tests.tiny_generator import tiny_generator

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_render_on_cuda_matches_cpu(tmp_path):
    """Seeded renders (const noise, hashed ray jitter) give the same image and depth on both
    devices, up to float reordering; chunking on the GPU does not change them either."""
    g = tiny_generator(tmp_path, c_dim=3)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    z, c = g.latents([0, 1]), [1, 2]
    cam = g.mean_camera(c)
    cpu = g.render(z, c, camera=cam, resolution=32, seed=3)
    g.to("cuda")
    cam_gpu = cam.to("cuda")
    gpu = g.render(z.cuda(), c, camera=cam_gpu, resolution=32, seed=3)
    chunked = g.render(z.cuda(), c, camera=cam_gpu, resolution=32, seed=3, chunk_rays=100)
    torch.testing.assert_close(gpu.rgb.cpu(), cpu.rgb, atol=2e-3, rtol=0)
    torch.testing.assert_close(gpu.depth.cpu(), cpu.depth, atol=2e-3, rtol=0)
    torch.testing.assert_close(chunked.rgb, gpu.rgb, atol=1e-5, rtol=0)


def test_bf16_training_step_on_gpu(tmp_path):
    cfg = compose_train(
        [
            "experiment=synthetic", *TINY, "trainer=gpu", "trainer.precision=bf16-mixed",
            "+trainer.fast_dev_run=true",
        ],
        tmp_path / "run",
        tmp_path / "data",
    )  # fmt: skip
    lit = train(cfg)["model"]
    assert lit.nimg.item() == 4 and lit.device.type == "cuda"
    for name, t in [*lit.named_parameters(), *lit.named_buffers()]:
        if t.is_floating_point():
            assert t.dtype == torch.float32 and torch.isfinite(t).all(), name
