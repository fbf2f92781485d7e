"""The viewer in a real browser: Debian's headless Chromium driven by Playwright (slow; skipped
where either is missing, e.g. on CI's fresh machine)."""

import io
import shutil
import socket
import time

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags this machine's Chromium needs (closed network, no GPU, root): see the environment notes.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine"),
]


def test_page_changes_the_seed_and_shows_a_new_render(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from gp3d.viewer.app import ViewerApp
    from gp3d.viewer.follow import resolve_source
    from tests.tiny_generator import save_tiny_generator

    path = save_tiny_generator(tmp_path, tmp_path / "g.pt", c_dim=3, seed=0)
    app = ViewerApp(resolve_source(path), port=0, resolution=32, settle_s=0.1)
    app.load()
    app.start()
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 900, "height": 600})
                page.goto(app.url)
                seed = page.get_by_label("Seed")
                seed.wait_for(timeout=60_000)
                first = app.wait_for_frame(0).rgb.copy()
                first_src = page.locator("img[src^='blob:']").first.get_attribute("src")
                n = app.frames_shown
                seed.fill("7")
                seed.press("Enter")
                after = app.wait_for_frame(n, timeout=60).rgb
                assert int(app.g_seed.value) == 7  # the page's input reached the server
                assert np.abs(after.astype(int) - first.astype(int)).mean() > 1.0
                # ... and the new render reached the page (the GUI image is a new blob)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    src = page.locator("img[src^='blob:']").first.get_attribute("src")
                    if src != first_src:
                        break
                    time.sleep(0.2)
                assert src != first_src
                shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
                pixels = np.asarray(shot)
                assert shot.size == (900, 600) and pixels.std() > 5.0  # not a blank page
            finally:
                browser.close()
    finally:
        app.stop()
    assert not app._threads[0].is_alive()  # the render thread is gone ...
    with socket.socket() as s, pytest.raises(OSError):  # ... and so is the server
        s.settimeout(2)
        s.connect(("127.0.0.1", app.port))
