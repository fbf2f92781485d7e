"""The browser viewer's pure parts (pose conversion, render scheduling, checkpoint following) and
its command's errors; the page itself is driven in a real browser in test_viewer_browser.py."""

import math
import os
import socket
import time

import numpy as np
import pytest
import torch

from gp3d.models.camera import cam2world, project_points
from gp3d.types import CameraParams
from gp3d.viewer.follow import CheckpointFollower, resolve_source
from gp3d.viewer.pose import (
    ViewerPose,
    camera_to_pose,
    fit_to_aspect,
    matrix_to_quat,
    pose_to_camera,
    quat_to_matrix,
)
from gp3d.viewer.schedule import RenderScheduler
from tests.net import free_port


def random_cameras(n: int, seed: int = 0) -> CameraParams:
    """Cameras over the default prior box (spec 3.4), look-at radius up to 0.2."""
    g = torch.Generator().manual_seed(seed)

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)

    return CameraParams(
        yaw=u(-1.57, 1.57),
        pitch=u(math.pi / 4, 3 * math.pi / 4),
        roll=torch.zeros(n, dtype=torch.float64),
        radius=u(0.8, 1.5),
        fov=u(10, 45),
        la_yaw=u(-math.pi, math.pi),
        la_pitch=u(0.1, math.pi - 0.1),
        la_radius=u(0.0, 0.2),
    )


def test_quaternion_round_trip():
    cams = random_cameras(16)
    for m in cam2world(cams)[:, :3, :3].numpy():
        np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(m)), m, atol=1e-9)


def test_pose_round_trip_renders_the_same_camera():
    """camera -> viewer pose -> camera keeps cam2world (the rays) and the fov; the look-at may
    move along the forward ray (to its point closest to the origin), which changes nothing."""
    cams = random_cameras(32)
    back = CameraParams.cat([pose_to_camera(camera_to_pose(cams, i)) for i in range(32)])
    np.testing.assert_allclose(
        cam2world(back.to(torch.float64)).numpy(), cam2world(cams).numpy(), atol=1e-5
    )
    np.testing.assert_allclose(back.fov.numpy(), cams.fov.numpy(), rtol=1e-5)
    assert torch.all(back.roll == 0)
    assert torch.all(back.la_radius <= cams.la_radius.float() + 1e-5)  # never further out


def test_viewer_pose_projects_like_gp3d():
    """A world point lands at the same image position through viser's OpenCV pose (x right,
    y down, +z forward, vertical fov) as through gp3d's projection (x right, y up, spec 2.1)."""
    cams = random_cameras(8, seed=1)
    pts = torch.randn(8, 5, 3, dtype=torch.float64) * 0.1
    expected = project_points(cams, pts).numpy()
    for i in range(8):
        pose = camera_to_pose(cams, i)
        rot = quat_to_matrix(pose.wxyz)
        local = (pts[i].numpy() - np.asarray(pose.position)) @ rot  # world -> OpenCV camera
        t = math.tan(pose.fov / 2)
        got = np.stack([local[:, 0] / local[:, 2] / t, -local[:, 1] / local[:, 2] / t], axis=1)
        np.testing.assert_allclose(got, expected[i], atol=1e-6)


def test_pose_from_the_viewer_default_front_view():
    """The viewer at (0, 0, 1) looking at the origin is gp3d's yaw 0, pitch pi/2 camera."""
    rot_cv = np.diag([1.0, -1.0, -1.0])  # looking down -z with y up, in OpenCV axes
    pose = ViewerPose((0.0, 0.0, 1.0), matrix_to_quat(rot_cv), (0.0, 0.0, 0.0), math.radians(20))
    cam = pose_to_camera(pose)
    np.testing.assert_allclose(
        cam.to_tensor()[0, :5].numpy(), [0.0, math.pi / 2, 0.0, 1.0, 20.0], atol=1e-6
    )
    assert float(cam.la_radius[0]) < 1e-6


def test_fit_to_aspect_pads_or_crops_around_the_centre():
    img = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    wide = fit_to_aspect(img, 2.0)
    assert wide.shape == (16, 32, 3)
    np.testing.assert_array_equal(wide[:, 8:24], img)
    assert not wide[:, :8].any() and not wide[:, 24:].any()
    tall = fit_to_aspect(img, 0.5)
    np.testing.assert_array_equal(tall, img[:, 4:12])
    with pytest.raises(ValueError, match="square"):
        fit_to_aspect(img[:8], 1.0)


def test_scheduler_previews_while_moving_and_refines_once_settled():
    s = RenderScheduler(preview_resolution=32, full_resolution=128, settle_s=0.3)
    assert s.next_job(0.0) is None  # nothing to draw yet
    s.update("a", now=0.0)
    job = s.next_job(0.05)
    assert (job.view, job.resolution, job.final) == ("a", 32, False)
    assert s.next_job(0.06) is None  # one job at a time
    s.done(job)
    assert s.next_job(0.1) is None and 0 < s.wait_s(0.1) <= 0.2  # preview up, wait to settle
    s.update("b", now=0.15)  # moved again: a preview of the newest view, "a" never refines
    job = s.next_job(0.16)
    assert (job.view, job.resolution) == ("b", 32)
    s.update("c", now=0.2)  # moved while "b" renders
    s.done(job)
    job = s.next_job(0.25)
    assert (job.view, job.resolution) == ("c", 32)
    s.done(job)
    job = s.next_job(0.55)  # settled
    assert (job.view, job.resolution, job.final) == ("c", 128, True)
    s.done(job)
    assert s.next_job(1.0) is None and s.wait_s(1.0) == math.inf
    s.invalidate()  # a reloaded checkpoint redraws the same view at full resolution
    assert s.next_job(1.1).resolution == 128


def test_scheduler_does_not_retry_a_failed_view():
    s = RenderScheduler(16, 64, settle_s=0.0)
    s.update("x", 0.0)
    s.failed(s.next_job(0.0))
    assert s.next_job(1.0) is None
    s.update("y", 1.0)
    assert s.next_job(1.0).view == "y"
    with pytest.raises(ValueError, match="preview_resolution"):
        RenderScheduler(128, 64)


def test_resolve_source(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="without checkpoints/last.ckpt"):
        resolve_source(run.mkdir() or run)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    src = resolve_source(run)
    assert src.path == run / "checkpoints" / "last.ckpt" and src.follow
    assert not resolve_source(src.path).follow and resolve_source(src.path, follow=True).follow
    assert not resolve_source(run, follow=False).follow
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_source(tmp_path / "nope.ckpt")


def test_follower_reports_each_new_file_once(tmp_path):
    f = tmp_path / "last.ckpt"
    f.write_bytes(b"a")
    follower = CheckpointFollower(f)
    assert follower.changed() is None
    tmp = tmp_path / "tmp"
    tmp.write_bytes(b"bb")  # replaced atomically, as training writes it
    os.replace(tmp, f)
    sig = follower.changed()
    assert sig is not None
    follower.mark_loaded(sig)
    assert follower.changed() is None
    f.unlink()
    assert follower.changed() is None  # missing for a moment: keep the loaded one


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    from tests.tiny_generator import save_tiny_generator

    tmp = tmp_path_factory.mktemp("viewer")
    return save_tiny_generator(tmp, tmp / "g.pt", c_dim=3, seed=0)


def run_main(args):
    from gp3d.view import main

    return main(args)


def test_command_errors(tmp_path, generator_file, capsys):
    """Missing file, foreign files, a busy port and a class out of range: exit code 2 and one
    line that names the problem; nothing is served."""
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    port = str(free_port())
    cases = [
        ([str(tmp_path / "missing.ckpt"), "--port", port], "does not exist"),
        ([str(foreign), "--port", port], "neither a gp3d training checkpoint nor an export"),
        ([str(text), "--port", port], "cannot read"),
        ([str(generator_file), "--port", port, "--class", "7"], "out of range"),
        ([str(generator_file), "--port", port, "--class", "dog"], "unknown class"),
    ]
    for args, message in cases:
        assert run_main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert run_main([str(generator_file), "--port", str(busy.getsockname()[1])]) == 2
        assert "in use" in capsys.readouterr().err


def test_app_renders_reloads_and_survives_bad_gui_input(tmp_path, generator_file):
    """In-process server on a free port: the first frame comes, a seed change changes the
    image, a class out of range is refused (clamped, page still serving), and a newer
    last.ckpt in a followed run folder is loaded and redrawn."""
    from gp3d.viewer.app import ViewerApp
    from tests.tiny_generator import save_tiny_generator

    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    last = ckpts / "last.ckpt"
    last.write_bytes(generator_file.read_bytes())
    app = ViewerApp(
        resolve_source(tmp_path / "run"), port=0, resolution=32, settle_s=0.05, poll_s=0.2
    )
    app.load()
    app.start()
    try:
        first = app.wait_for_frame(0).rgb.copy()
        n = app.frames_shown
        app.g_seed.value = 3
        app._touch()
        seeded = app.wait_for_frame(n).rgb.copy()
        assert np.abs(seeded.astype(int) - first.astype(int)).mean() > 1.0

        n = app.frames_shown
        app.g_class.value = 99
        app._on_class()
        assert int(app.g_class.value) == 2  # clamped to the last class
        app._on_class()
        before = app.wait_for_frame(n).rgb.copy()

        n = app.frames_shown
        assert not app.reload_if_changed()  # nothing new yet
        save_tiny_generator(tmp_path / "g2", last, c_dim=3, seed=1)  # training writes anew
        deadline = time.monotonic() + 30
        while app.generation == 0 and time.monotonic() < deadline:  # the follow thread polls
            time.sleep(0.1)
        reloaded = app.wait_for_frame(n).rgb
        assert app.generation == 1
        assert np.abs(reloaded.astype(int) - before.astype(int)).mean() > 1.0
        assert "reloaded" in app.g_info.content

        png = app.png_download()
        assert png.startswith(b"\x89PNG")
        video, suffix = app.mp4_download()
        assert suffix in (".mp4", ".gif") and len(video) > 1000
    finally:
        app.stop()


@pytest.mark.slow
def test_command_serves_the_page_and_stops_on_sigterm(generator_file):
    """`python -m gp3d.view FILE --port P` serves HTTP on P and exits 0 on SIGTERM."""
    import signal
    import subprocess
    import sys
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gp3d.view", str(generator_file), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=2).status
                break
            except OSError:
                time.sleep(0.5)
        assert status == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "gp3d viewer: stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_mesh_button_adds_the_sample_mesh_or_reports_why_not(tmp_path, generator_file):
    """No surface at the threshold: a notification, the page keeps serving; a threshold inside
    the sample's density range: its marching-cubes mesh is in the scene and downloadable."""
    from gp3d.inference.mesh import cube_bounds, density_grid
    from gp3d.viewer.app import ViewerApp

    app = ViewerApp(resolve_source(generator_file), port=0, resolution=16, settle_s=0.0)
    app.load()
    app.start()
    try:
        notes = []
        app._notify = lambda title, body: notes.append((title, body))
        app.g_mesh_res.value = 16
        app.g_mesh_thr.value = 1e9
        app._run_safely("Mesh", app._show_mesh)
        assert app.mesh_handle is None and notes and "no surface" in notes[0][1]

        planes = app.renderer.planes(app._sample())
        field = app.gen.G.field(planes)
        lo, hi = cube_bounds()
        grid = density_grid(lambda p: field(p[None])[1][0, :, 0], 16, lo, hi)
        app.g_mesh_thr.value = float(np.median(grid))
        app._run_safely("Mesh", app._show_mesh)
        assert app.mesh_handle is not None and len(notes) == 1
        mesh = app.current_mesh()
        assert len(mesh.faces) > 0 and mesh.export(file_type="glb")[:4] == b"glTF"
    finally:
        app.stop()
