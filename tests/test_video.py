"""Videos and display images: written videos decode with the right frame count, size and fps."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from gp3d.utils.media import VideoWriter, colorize_depth, save_video, tile, turbo


def _frames(n, h, w):
    gen = torch.Generator().manual_seed(0)
    return [torch.rand(3, h, w, generator=gen) * 2 - 1 for _ in range(n)]


@pytest.mark.parametrize("size", [(32, 48), (31, 47)])  # odd sides use yuv444p
def test_mp4_decodes_with_frame_count_size_and_fps(size, tmp_path):
    frames = _frames(9, *size)
    path = save_video(frames, tmp_path / "v.mp4", fps=30, crf=10)
    assert path.suffix == ".mp4"
    video = iio.imread(path)
    assert video.shape == (9, *size, 3)
    assert iio.immeta(path)["fps"] == pytest.approx(30)
    # crf 10 is near-lossless for smooth content: a constant frame comes back within a few levels
    flat = save_video([torch.full((3, *size), 0.2)] * 3, tmp_path / "flat.mp4", fps=25, crf=10)
    assert np.abs(iio.imread(flat).astype(int) - round((0.2 + 1) * 127.5)).max() <= 3


def test_gif_and_streaming_writer(tmp_path):
    path = save_video(_frames(4, 16, 20), tmp_path / "v.gif", fps=10)
    assert iio.imread(path).shape[:3] == (4, 16, 20)
    with VideoWriter(tmp_path / "s.mp4", fps=25) as w:
        for f in _frames(5, 16, 16):
            w.append(f)
        out = w.close()
    assert iio.imread(out).shape == (5, 16, 16, 3)


def test_failed_video_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "bad.mp4") as w:
        w.append(_frames(1, 16, 16)[0])
        raise RuntimeError("render failed")
    assert list(tmp_path.iterdir()) == []
    w = VideoWriter(tmp_path / "size.mp4")
    w.append(torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="frame size"):
        w.append(torch.zeros(3, 8, 16))
    w.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="at least one frame"):
        save_video([], tmp_path / "empty.mp4")


def test_depth_colormap():
    x = torch.linspace(0, 1, 11).view(1, 1, 1, 11)
    rgb = turbo(x)[0, :, 0].T  # [11, 3]
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[1, 2] > 2 * rgb[1, 0] and rgb[-2, 0] > 2 * rgb[-2, 2]  # blue near, red far
    assert rgb[5, 1] > 0.9  # green-yellow in the middle
    depth = torch.tensor([0.5, 0.75, 1.0, 1.25, 2.0]).view(1, 1, 1, 5)
    img = colorize_depth(depth, 0.75, 1.25)
    assert img.shape == (1, 3, 1, 5) and img.min() >= -1 and img.max() <= 1
    assert img[..., 0].equal(img[..., 1]) and img[..., 3].equal(img[..., 4])  # clamped to range
    gray = colorize_depth(depth, 0.75, 1.25, "gray")
    torch.testing.assert_close(gray[0, :, 0, 2], torch.zeros(3))  # mid depth -> mid grey
    with pytest.raises(ValueError, match="unknown depth colormap"):
        colorize_depth(depth, 0.75, 1.25, "jet")


def test_tile_places_cells_row_major():
    cells = [[np.full((2, 3, 3), 10 * i + j, np.uint8) for j in range(4)] for i in range(2)]
    grid = tile(cells, padding=1)
    assert grid.shape == (2 * 3 + 1, 4 * 4 + 1, 3)
    assert grid[1, 1, 0] == 0 and grid[4, 1 + 4 * 3, 0] == 13 and grid[0, 0, 0] == 0


def test_writer_failing_mid_stream_raises_instead_of_a_truncated_gif(tmp_path):
    """The GIF fallback is only for an ffmpeg that cannot start: frames already streamed into
    the mp4 would be missing from a GIF written after a later failure."""
    w = VideoWriter(tmp_path / "mid.mp4", fps=25)
    frames = _frames(3, 16, 16)
    w.append(frames[0])
    real = w._writer

    def broken(_):
        raise OSError("disk full")

    real.append_data = broken
    with pytest.raises(RuntimeError, match="after 1 frames"):
        w.append(frames[1])
    assert list(tmp_path.iterdir()) == []
