"""The app in a real browser: headless Chromium driven by Selenium draws strokes with the mouse.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them);
skipped, saying so, where ``/usr/bin/chromedriver`` is missing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("dash")
selenium = pytest.importorskip("selenium")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

import gpuseg  # noqa: E402
from gpuseg.app import create_app, sample_image  # noqa: E402
from gpuseg.app.latency import measure_stroke_to_overlay  # noqa: E402
from gpuseg.app.files import encode_tiff  # noqa: E402

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = "GPUSEG_SCREENSHOT"
"""Set to docs/app-screenshot.png to refresh the README's picture; otherwise the test writes it to its temporary folder."""
CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
)
# Strokes on scikit-image's coins, in image (column, row) coordinates.
BACKGROUND_STROKE = [(8, 10), (8, 60), (20, 85), (120, 84), (240, 86), (360, 85), (370, 140)]
COIN_STROKES = [[(30, 255), (46, 262), (62, 266)], [(155, 258), (172, 262), (190, 264)]]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMEDRIVER.exists(),
                       reason="/usr/bin/chromedriver is missing: apt-get install chromium chromium-driver "
                              "(make test does)"),
]


@pytest.fixture
def serve():
    """``serve(**options)`` serves ``create_app(backend="cpu", **options)`` on a free local port
    from a thread and returns its URL."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # Compile (or load from Numba's cache) the CPU kernels before the browser starts waiting for them.
    measure_stroke_to_overlay(np.random.default_rng(0).random((32, 32), dtype=np.float32), backend="cpu", repeats=1)
    servers = []

    def start(**options):
        srv = make_server("127.0.0.1", 0, create_app(backend="cpu", **options).server, threaded=True)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        servers.append((srv, thread))
        return f"http://127.0.0.1:{srv.server_port}/"

    yield start
    for srv, thread in servers:
        srv.shutdown()
        thread.join(10)


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    yield driver
    driver.quit()


def wait_for(condition, timeout=60.0, what="the page", driver=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    page = f" The page says: {text(driver, 'message')!r} {text(driver, 'status')!r}" if driver else ""
    raise AssertionError(f"Timed out after {timeout} s waiting for {what}.{page}")


def text(driver, element_id) -> str:
    """Text of an element, empty while the page has not rendered it."""
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : '';",
                                 element_id)


def to_viewport(driver, x, y):
    """Viewport pixel of image coordinates (column ``x``, row ``y``) in the figure."""
    return driver.execute_script(
        """const gd = document.querySelector('#graph .js-plotly-plot');
        const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        return [r.left + xa._offset + xa.d2p(arguments[0]), r.top + ya._offset + ya.d2p(arguments[1])];""",
        x, y,
    )


def draw(driver, points):
    """Press, move through ``points`` (image coordinates) in small steps, release: a real mouse stroke."""
    chain = ActionChains(driver, duration=10)
    pointer = chain.w3c_actions.pointer_action
    pixels = [to_viewport(driver, x, y) for x, y in points]
    pointer.move_to_location(*map(int, pixels[0]))
    pointer.pointer_down()
    for (x0, y0), (x1, y1) in zip(pixels, pixels[1:]):
        for t in np.linspace(0, 1, 6)[1:]:
            pointer.move_to_location(int(x0 + t * (x1 - x0)), int(y0 + t * (y1 - y0)))
    pointer.pointer_up()
    chain.perform()


def strokes_shown(driver) -> int:
    return driver.execute_script(
        "const gd = document.querySelector('#graph .js-plotly-plot');"
        "return (gd && gd.layout.shapes || []).filter(s => String(s.name).startsWith('s')).length;")


def overlay_visible(driver) -> bool:
    return driver.execute_script(
        "const gd = document.querySelector('#graph .js-plotly-plot');"
        "return !!(gd && gd.data.length > 1 && gd.data[1].visible === true);")


def test_scribble_segment_download(serve, browser, tmp_path):
    browser.get(serve())
    wait_for(lambda: "backend:" in text(browser, "status"), what="the first render", driver=browser)
    wait_for(lambda: browser.execute_script("return !!document.querySelector('#graph .nsewdrag')"),
             what="the figure")

    draw(browser, BACKGROUND_STROKE)  # class 1, selected at start
    wait_for(lambda: strokes_shown(browser) == 1, what="the first stroke to come back from the server")
    assert "at least two classes" in text(browser, "message")

    browser.find_elements(By.CSS_SELECTOR, "#active-class input")[1].click()
    for n, stroke in enumerate(COIN_STROKES, start=2):
        draw(browser, stroke)
        wait_for(lambda n=n: strokes_shown(browser) == n, what=f"stroke {n}")
    wait_for(lambda: overlay_visible(browser), what="the segmentation overlay")
    status = text(browser, "status")
    assert "model: trained on scribbles" in status and "stroke to overlay" in status

    browser.find_element(By.ID, "download-model").click()
    model_path = wait_for(lambda: next(iter(tmp_path.glob("*.gpuseg")), None), what="the model download")
    image = sample_image()[0].frame(0)
    labels = gpuseg.load(model_path, backend="cpu").predict(image)
    assert labels.shape == image.shape
    rows, cols = zip(*[(y, x) for x, y in BACKGROUND_STROKE[:-1]])
    assert np.all(labels[rows, cols] == 1)
    assert labels[262, 46] == 2 and labels[262, 172] == 2
    assert 0.1 < np.mean(labels == 2) < 0.6  # coins cover about a third of the image

    screenshot = Path(os.environ.get(SCREENSHOT, tmp_path / "app-screenshot.png"))
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0


def test_uploads_give_messages_and_stacks_get_their_controls(serve, browser, tmp_path):
    browser.get(serve(max_upload_mb=1))
    wait_for(lambda: "backend:" in text(browser, "status"), what="the first render", driver=browser)
    def upload(path):
        browser.find_element(By.CSS_SELECTOR, "#upload-image input[type=file]").send_keys(str(path))

    (tmp_path / "notes.png").write_text("not an image")
    upload(tmp_path / "notes.png")
    wait_for(lambda: "could not be read" in text(browser, "message"), what="the unreadable-upload message",
             driver=browser)

    big = tmp_path / "big.tif"
    big.write_bytes(encode_tiff(np.random.default_rng(0).random((600, 600), dtype=np.float32)))
    upload(big)
    wait_for(lambda: "over the upload limit of 1 MB" in text(browser, "message"), what="the size-limit message",
             driver=browser)

    stack = tmp_path / "stack.tif"  # a time-lapse of 3D stacks with two channels
    tifffile.imwrite(stack, np.random.default_rng(0).integers(0, 255, (2, 5, 2, 40, 50), dtype=np.uint8),
                     imagej=True, metadata={"axes": "TZCYX"})
    upload(stack)
    wait_for(lambda: text(browser, "image-name").startswith("stack.tif: 2 frames of 5 x 40 x 50, 2 channels"),
             what="the stack to load", driver=browser)
    for box in ("channel-box", "frame-box", "plane-box"):
        assert browser.find_element(By.ID, box).is_displayed(), box
    assert text(browser, "message") == ""
