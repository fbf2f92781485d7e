"""The browser viewer: a viser server whose page shows the generator's render at the viewer's pose.

Threads: viser calls the GUI and camera callbacks from its pool; they only record the new view
(:class:`~gp3d.viewer.schedule.RenderScheduler`) and wake the render thread, which draws the
latest view (coarse while it changes, full once it settles). A second thread follows a run's
``last.ckpt`` and swaps the generator in when a newer one appears. The generator is used by one
thread at a time (``_gen_lock``).
"""

import io
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gp3d.inference import trajectories
from gp3d.inference.portable import LoadedGenerator, load_generator
from gp3d.utils.media import VideoWriter, tile
from gp3d.viewer.follow import CheckpointFollower, Source
from gp3d.viewer.pose import ViewerPose, camera_to_pose, fit_to_aspect, pose_to_camera
from gp3d.viewer.render import Frame, Sample, SampleRenderer, View
from gp3d.viewer.schedule import RenderJob, RenderScheduler


class PortInUseError(OSError):
    pass


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUseError` when ``port`` cannot be bound (viser would silently move
    to the next port, and the forwarded or bookmarked address would show nothing)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        try:
            s.bind((host, port))
        except OSError as err:
            raise PortInUseError(
                f"port {port} on {host} is in use ({err.strerror}): pass another --port "
                "(or --port 0 for any free one)"
            ) from err


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


class ViewerApp:
    """Serve a generator in the browser. ``start()`` returns once the page is being served."""

    def __init__(
        self,
        source: Source,
        host: str = "127.0.0.1",
        port: int = 8080,
        resolution: int = 128,
        preview_resolution: int | None = None,
        settle_s: float = 0.3,
        mesh_resolution: int = 64,
        device: str = "cpu",
        seed: int = 0,
        class_: int | str | None = None,
        truncation_psi: float = 0.7,
        poll_s: float = 2.0,
        video_frames: int = 32,
    ) -> None:
        self.source, self.host, self.port, self.device = source, host, port, device
        self.resolution, self.mesh_resolution = resolution, mesh_resolution
        self.poll_s, self.video_frames = poll_s, video_frames
        preview = preview_resolution or max(16, resolution // 4)
        self.scheduler = RenderScheduler(min(preview, resolution), resolution, settle_s)
        self._class_arg = class_
        self._init: tuple[int, int | None, float] = (seed, None, truncation_psi)
        self._lock = threading.Condition()  # scheduler, pose, frames
        self._gen_lock = threading.Lock()  # the generator is used by one thread at a time
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.server = None
        self.generation = 0
        self.frame: Frame | None = None  # the last image shown
        self.frame_job: RenderJob | None = None
        self.frames_shown = 0
        self.last_latency_s: float | None = None  # view change -> its full image on the page
        self.first_latency_s: float | None = None  # view change -> its first (preview) image
        self._first_shown_for = None
        self._changed_at = 0.0
        self._pose: ViewerPose | None = None
        self._aspect = 1.0
        self.gen: LoadedGenerator | None = None
        self.renderer: SampleRenderer | None = None

    # --- lifecycle --------------------------------------------------------------------------
    def load(self) -> None:
        """Load the generator (errors: FileNotFoundError / CheckpointError, raised here, before
        anything is served)."""
        gen = load_generator(self.source.path, device=self.device)
        self.follower = CheckpointFollower(self.source.path)
        # A class out of range or unknown is a ValueError naming the valid ones.
        c = gen.class_index(self._class_arg) if self._class_arg is not None else None
        if c is None and gen.num_classes:
            c = 0
        self._init = (self._init[0], c, self._init[2])
        self._set_generator(gen)

    def _set_generator(self, gen: LoadedGenerator) -> None:
        with self._gen_lock:
            self.gen, self.renderer = gen, SampleRenderer(gen)

    def start(self) -> None:
        import viser

        check_port_free(self.host, self.port)
        if self.gen is None:
            self.load()
        self.server = viser.ViserServer(host=self.host, port=self.port, verbose=False)
        if self.port and self.server.get_port() != self.port:  # lost a race for the port
            self.server.stop()
            raise PortInUseError(f"port {self.port} was taken while starting: pass another --port")
        self.port = self.server.get_port()
        self.server.scene.set_up_direction("+y")  # gp3d's world up (spec 3.2)
        self._build_gui()
        self._build_scene()
        self.server.on_client_connect(self._on_connect)
        self._pose = camera_to_pose(self._base_camera(posterior=True))
        self._touch()
        for fn in (self._render_loop, self._follow_loop):
            t = threading.Thread(target=fn, daemon=True, name=f"gp3d-view-{fn.__name__}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        for t in self._threads:
            t.join(timeout=5)
        if self.server is not None:
            self.server.stop()

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "127.0.0.1") else self.host
        return f"http://{host}:{self.port}"

    # --- state ------------------------------------------------------------------------------
    def _sample(self) -> Sample:
        c = int(self.g_class.value) if self.gen.num_classes else None  # type: ignore[union-attr]
        return Sample(int(self.g_seed.value), c, float(self.g_psi.value))

    def current_view(self) -> View:
        cam = pose_to_camera(self._pose)  # type: ignore[arg-type]
        return View(
            sample=self._sample(),
            camera=tuple(float(v) for v in cam.to_tensor()[0]),
            posterior=bool(self.g_posterior.value),
            generation=self.generation,
        )

    def _touch(self) -> None:
        """Something the image depends on changed: schedule the new view."""
        with self._lock:
            try:
                view = self.current_view()
            except ValueError as err:
                self._notify("Invalid input", str(err))
                return
            if self.scheduler.view != view:
                self._changed_at = time.perf_counter()
            self.scheduler.update(view, time.monotonic())
            self._lock.notify_all()

    def set_pose(self, pose: ViewerPose, aspect: float | None = None) -> None:
        """The viewer's camera moved (also the programmatic entry point used in tests)."""
        with self._lock:
            self._pose = pose
            resized = bool(aspect) and aspect != self._aspect
            if resized:
                self._aspect = aspect  # type: ignore[assignment]
                self._show_background()  # re-fit the shown image to the new viewport
        self._touch()

    def _base_camera(self, posterior: bool):
        """The inference base camera (spec 8.4): posterior mean of the current class, or the
        centre of the prior box."""
        with self._gen_lock:
            gen = self.gen
            assert gen is not None
            if posterior and gen.G.camera_generator is not None:
                c = None
                if gen.num_classes:
                    c = [int(self.g_class.value) if hasattr(self, "g_class") else 0]
                return gen.mean_camera(c, num_samples=256).to("cpu")
            return trajectories.mean_camera(gen.G.camera_prior)

    def _notify(self, title: str, body: str) -> None:
        if self.server is None:
            return
        for client in self.server.get_clients().values():
            client.add_notification(title, body, auto_close_seconds=6.0, color="red")

    # --- GUI --------------------------------------------------------------------------------
    def _build_gui(self) -> None:
        gui, gen = self.server.gui, self.gen  # type: ignore[union-attr]
        seed, class_index, psi = self._init
        kimg = gen.meta.get("kimg")
        info = f"**{self.source.path.name}**" + (f" · {kimg:.1f} kimg" if kimg is not None else "")
        if self.source.follow:
            info += " · following"
        self.g_info = gui.add_markdown(info)
        self.g_rgb = gui.add_image(np.zeros((8, 8, 3), np.uint8), label="RGB")
        self.g_depth = gui.add_image(np.zeros((8, 8, 3), np.uint8), label="depth (near..far)")
        self.g_status = gui.add_markdown("starting…")
        self.g_seed = gui.add_number("Seed", initial_value=seed, min=0, step=1)
        self.g_seed_step = gui.add_button_group("Step seed", ["◀ prev", "next ▶"])
        n = gen.num_classes
        names = gen.class_names or []
        self.g_class = gui.add_number(
            "Class",
            initial_value=class_index or 0,
            min=0,
            max=max(n - 1, 0),
            step=1,
            disabled=n == 0,
            hint=f"0..{n - 1}" if n else "unconditional generator",
        )
        self.g_class_name = gui.add_markdown("")
        self.g_psi = gui.add_slider("Truncation ψ", min=0.0, max=1.0, step=0.05, initial_value=psi)
        has_cg = gen.G.camera_generator is not None
        self.g_posterior = gui.add_checkbox(
            "Camera generator",
            initial_value=has_cg,
            disabled=not has_cg,
            hint="on: the pose goes through the learned camera generator (posterior); "
            "off: rendered exactly as posed (prior)",
        )
        self.g_frustum = gui.add_checkbox(
            "Show rendered camera",
            initial_value=False,
            hint="a frustum at the camera actually rendered (the posterior one, if on)",
        )
        self.g_background = gui.add_dropdown(
            "Background", ["RGB", "depth", "none"], initial_value="RGB"
        )
        self.g_fov = gui.add_slider("FOV (deg)", min=5.0, max=90.0, step=0.5, initial_value=30.0)
        self.g_reset = gui.add_button_group("Reset view", ["posterior mean", "prior mean"])
        with gui.add_folder("Mesh"):
            self.g_mesh_res = gui.add_slider(
                "Grid", min=16, max=256, step=16, initial_value=self.mesh_resolution
            )
            self.g_mesh_thr = gui.add_number(
                "Density threshold",
                initial_value=25.0,
                step=0.5,
                hint="raw density (spec 8.3: 25); lower it for an untrained generator",
            )
            self.g_mesh_btn = gui.add_button("Extract mesh")
            self.g_mesh_show = gui.add_checkbox("Show mesh", initial_value=True)
        with gui.add_folder("Download"):
            self.g_dl = gui.add_button_group("File", ["PNG", "MP4", "mesh"])

        self.g_seed.on_update(lambda _: self._touch())
        self.g_psi.on_update(lambda _: self._touch())
        self.g_posterior.on_update(lambda _: self._touch())
        self.g_background.on_update(lambda _: self._show_background())
        self.g_frustum.on_update(lambda _: self.frame and self._show_frustum(self.frame))
        self.g_class.on_update(lambda _: self._on_class())
        self.g_fov.on_update(lambda _: self._on_fov())
        self.g_seed_step.on_click(self._on_seed_step)
        self.g_reset.on_click(self._on_reset)
        self.g_mesh_btn.on_click(lambda _: self._run_safely("Mesh", self._show_mesh))
        self.g_mesh_show.on_update(self._on_mesh_visible)
        self.g_dl.on_click(self._on_download)
        self._update_class_name(names)

    def _build_scene(self) -> None:
        scene = self.server.scene  # type: ignore[union-attr]
        # The renderer's box (spec 1: [-0.5, 0.5]^3 at cube_scale 0.5) as a wireframe reference.
        scene.add_box(
            "/scene_box", color=(120, 120, 120), dimensions=(1.0, 1.0, 1.0), wireframe=True
        )
        self.mesh_handle = None
        self.frustum = None

    def _update_class_name(self, names=None) -> None:
        names = names if names is not None else (self.gen.class_names or [])  # type: ignore[union-attr]
        c = int(self.g_class.value)
        self.g_class_name.content = f"class {c}: *{names[c]}*" if c < len(names) else ""

    def _on_class(self) -> None:
        n = self.gen.num_classes  # type: ignore[union-attr]
        c = int(self.g_class.value)
        if n and not 0 <= c < n:
            self._notify("Class out of range", f"class {c}: this generator has 0..{n - 1}")
            self.g_class.value = min(max(c, 0), n - 1)
            return
        self._update_class_name()
        self._touch()

    def _on_seed_step(self, event) -> None:
        step = 1 if "next" in self.g_seed_step.value else -1
        self.g_seed.value = max(0, int(self.g_seed.value) + step)

    def _on_fov(self) -> None:
        for client in self.server.get_clients().values():  # type: ignore[union-attr]
            client.camera.fov = float(np.radians(self.g_fov.value))

    def _on_reset(self, event) -> None:
        cam = self._base_camera(posterior="posterior" in self.g_reset.value)
        self._apply_pose(camera_to_pose(cam))

    def _apply_pose(self, pose: ViewerPose) -> None:
        for client in self.server.get_clients().values():  # type: ignore[union-attr]
            with client.atomic():
                client.camera.up_direction = (0.0, 1.0, 0.0)
                client.camera.fov = pose.fov
                client.camera.position = pose.position
                client.camera.look_at = pose.look_at
        self.g_fov.value = float(np.degrees(pose.fov))
        self.set_pose(pose)

    def _on_connect(self, client) -> None:
        pose = self._pose
        assert pose is not None
        with client.atomic():
            client.camera.up_direction = (0.0, 1.0, 0.0)
            client.camera.fov = pose.fov
            client.camera.position = pose.position
            client.camera.look_at = pose.look_at
        self.g_fov.value = float(np.degrees(pose.fov))

        @client.camera.on_update
        def _(camera) -> None:
            pose = ViewerPose(
                position=tuple(float(v) for v in camera.position),
                wxyz=tuple(float(v) for v in camera.wxyz),
                look_at=tuple(float(v) for v in camera.look_at),
                fov=float(camera.fov),
            )
            self.set_pose(pose, aspect=float(camera.aspect))

        self._show_background()

    # --- rendering --------------------------------------------------------------------------
    def _render_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                job = self.scheduler.next_job(time.monotonic())
                if job is None:
                    wait = self.scheduler.wait_s(time.monotonic())
                    self._lock.wait(timeout=min(wait, 0.5))
                    continue
            t0 = time.perf_counter()
            try:
                with self._gen_lock:
                    frame = self.renderer.render(job.view, job.resolution)  # type: ignore[union-attr]
            except Exception as err:  # a bad view must not kill the page
                with self._lock:
                    self.scheduler.failed(job)
                self._notify("Render failed", f"{type(err).__name__}: {err}")
                continue
            self._show(job, frame, time.perf_counter() - t0)

    def _show(self, job: RenderJob, frame: Frame, render_s: float) -> None:
        with self._lock:
            latency = time.perf_counter() - self._changed_at
            self.frame, self.frame_job = frame, job
            self.g_rgb.image = frame.rgb
            self.g_depth.image = frame.depth
            self._show_background()
            self._show_frustum(frame)
            self.frames_shown += 1
            if job.view == self.scheduler.view:
                if self._first_shown_for != job.view:
                    self._first_shown_for, self.first_latency_s = job.view, latency
                if job.final:
                    self.last_latency_s = latency
            kind = "full" if job.final else "preview"
            self.g_status.content = (
                f"{job.resolution}² {kind} · render {render_s * 1000:.0f} ms · "
                f"change→image {latency * 1000:.0f} ms"
            )
            self.scheduler.done(job)
            self._lock.notify_all()

    def _show_background(self) -> None:
        if self.server is None or self.frame is None:
            return
        mode = self.g_background.value
        if mode == "none":
            self.server.scene.set_background_image(None)
            return
        img = self.frame.rgb if mode == "RGB" else self.frame.depth
        self.server.scene.set_background_image(fit_to_aspect(img, self._aspect), format="png")

    def _show_frustum(self, frame: Frame) -> None:
        """The camera actually rendered; differs from the viewer's in posterior mode."""
        pose = camera_to_pose(frame.camera)
        self.frustum = self.server.scene.add_camera_frustum(  # type: ignore[union-attr]
            "/rendered_camera",
            fov=pose.fov,
            aspect=1.0,
            scale=0.08,
            thickness=0.003,
            color=(255, 140, 0),
            wxyz=pose.wxyz,
            position=pose.position,
            visible=bool(self.g_frustum.value),
        )

    def wait_for_frame(self, after: int, final: bool = True, timeout: float = 60.0) -> Frame:
        """Block until more than ``after`` frames were shown and (optionally) the current view's
        full-resolution frame is up (tests and the latency measurement use this)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                done = self.frames_shown > after and self.frame_job is not None
                if done and final:
                    done = self.frame_job.final and self.frame_job.view == self.scheduler.view  # type: ignore[union-attr]
                if done:
                    return self.frame  # type: ignore[return-value]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no new frame from the viewer's render thread")
                self._lock.wait(timeout=min(left, 0.5))

    # --- checkpoint following ---------------------------------------------------------------
    def _follow_loop(self) -> None:
        if not self.source.follow:
            return
        while not self._stop.wait(self.poll_s):
            self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        sig = self.follower.changed()
        if sig is None:
            return False
        self.follower.mark_loaded(sig)  # a broken file is tried once, not every poll
        try:
            gen = load_generator(self.source.path, device=self.device)
        except Exception as err:
            self._notify("Reload failed", f"{self.source.path}: {err}; keeping the loaded one")
            return False
        self._set_generator(gen)
        with self._lock:
            self.generation += 1
            self.scheduler.invalidate()
        kimg = gen.meta.get("kimg")
        self.g_info.content = f"**{self.source.path.name}** reloaded" + (
            f" · {kimg:.1f} kimg" if kimg is not None else ""
        )
        if gen.num_classes and int(self.g_class.value) >= gen.num_classes:
            self.g_class.value = gen.num_classes - 1
        self._touch()
        return True

    # --- mesh and downloads -----------------------------------------------------------------
    def _run_safely(self, what: str, fn) -> None:
        """Run a button's action; an error becomes a notification, not a dead page."""
        try:
            fn()
        except Exception as err:
            self._notify(f"{what} failed", f"{type(err).__name__}: {err}")

    def current_mesh(self):
        sample = self._sample()
        with self._gen_lock:
            gen = self.gen
            assert gen is not None
            c = None if sample.class_index is None else [sample.class_index]
            return gen.mesh(
                gen.latents([sample.seed]),
                c,
                truncation_psi=sample.truncation_psi,
                resolution=int(self.g_mesh_res.value),
                threshold=float(self.g_mesh_thr.value),
            )

    def _show_mesh(self) -> None:
        self.g_status.content = "extracting mesh…"
        mesh = self.current_mesh()
        if len(mesh.faces) == 0:
            self._notify("Empty mesh", "no surface at the density threshold for this sample")
            return
        self.mesh_handle = self.server.scene.add_mesh_trimesh(  # type: ignore[union-attr]
            "/mesh", mesh, visible=bool(self.g_mesh_show.value)
        )
        self.g_status.content = f"mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces"

    def _on_mesh_visible(self, event) -> None:
        if self.mesh_handle is not None:
            self.mesh_handle.visible = bool(self.g_mesh_show.value)

    def png_download(self) -> bytes:
        """RGB | depth of the current view at full resolution."""
        view = self.current_view()
        with self._gen_lock:
            frame = self.renderer.render(view, self.resolution)  # type: ignore[union-attr]
        return png_bytes(tile([[frame.rgb, frame.depth]]))

    def mp4_download(self) -> tuple[bytes, str]:
        """A front-circle turntable (spec 8.4) around the current camera: RGB | depth."""
        view = self.current_view()
        with self._gen_lock, tempfile.TemporaryDirectory() as tmp:
            base = self.renderer.camera(view)  # type: ignore[union-attr]
            writer = VideoWriter(Path(tmp) / "view.mp4", fps=25)
            for cam in trajectories.front_circle(base, self.video_frames):
                v = View(view.sample, tuple(float(x) for x in cam.to_tensor()[0]), False)
                f = self.renderer.render(v, self.resolution)  # type: ignore[union-attr]
                both = tile([[f.rgb, f.depth]], padding=0)
                writer.append(torch.from_numpy(both).permute(2, 0, 1).float() / 127.5 - 1)
            path = writer.close()  # .gif when ffmpeg cannot write mp4
            return path.read_bytes(), path.suffix

    def _on_download(self, event) -> None:
        what, s = self.g_dl.value, self._sample()
        stem = f"gp3d_seed{s.seed}" + (
            f"_class{s.class_index}" if s.class_index is not None else ""
        )
        client = event.client

        def run() -> None:
            if what == "PNG":
                client.send_file_download(f"{stem}.png", self.png_download())
            elif what == "MP4":
                data, suffix = self.mp4_download()
                client.send_file_download(f"{stem}{suffix}", data)
            else:
                mesh = self.current_mesh()
                client.send_file_download(f"{stem}.glb", mesh.export(file_type="glb"))

        self._run_safely(f"{what} download", run)
