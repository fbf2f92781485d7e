"""data_prep.bench --stages: per-stage rates and the ImageNet arithmetic."""

import math

import pytest

from data_prep.bench import stages
from data_prep.bench.pipeline import make_photo_folder


def test_imagenet_hours_scale_with_devices():
    rate = stages.IMAGENET_TRAIN_IMAGES / 3600  # one hour on one device
    assert stages.imagenet_hours(rate, 1) == pytest.approx(1.0)
    assert stages.imagenet_hours(rate, 8) == pytest.approx(1 / 8)
    assert stages.imagenet_hours(2 * rate, 32) == pytest.approx(1 / 64)


def test_decode_and_write_rates_on_photos(tmp_path):
    make_photo_folder(tmp_path, 3)
    decode, write = stages.decode_and_write_rates(tmp_path, 32)
    assert all(math.isfinite(r) and r > 0 for r in (decode, write))


@pytest.mark.parametrize("bf16", [False, True])
def test_network_rate_counts_images(bf16):
    import torch

    net = torch.nn.Conv2d(3, 4, 3)
    rate = stages._rate(net, torch.randn(2, 3, 16, 16), lambda m, x: m(x), repeats=3, bf16=bf16)
    assert math.isfinite(rate) and rate > 0
