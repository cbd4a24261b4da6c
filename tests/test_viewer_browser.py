"""The viewer page in headless Chromium against a live node: the screenshot's overlay sits on the masks.

Needs Debian's chromium + chromium-driver (.ci/run installs them) and selenium ([dev]); skipped
with the reason where either is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.ops.listen import parse_listen
from perception.runtime.node import Node
from perception.viewer.server import Viewer
from perception.wire.messages import FrameMessage, ImageMessage
from perception.wire.subscriber import Subscriber
from tests.ops_support import NodeThread
from tests.viewer_support import FRAMES, viewer_node_config
from tests.waiting import wait_until

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs chromium and chromium-driver (apt-get install chromium chromium-driver)")

DIFFERS = 40  # a channel this far from the picture is overlay, not JPEG noise


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-dev-shm-usage", "--force-device-scale-factor=1", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_page_waits_for_the_node_then_draws_overlays_where_the_masks_are(tmp_path: Path, browser) -> None:
    config = viewer_node_config(tmp_path)
    frames: dict[int, FrameMessage] = {}
    images: dict[int, ImageMessage] = {}
    viewer = Viewer(config.publish.endpoint, "cam0", parse_listen("127.0.0.1:0", "--port"))
    try:
        browser.get(viewer.url)
        state = lambda: browser.execute_script("return window.viewerState")  # noqa: E731
        waiting = wait_until(lambda: "waiting for" in state()["status"] and state(), what="the waiting line")
        assert waiting["status"] == f"waiting for perception/cam0/ on {config.publish.endpoint}"
        assert waiting["frameIndex"] is None
        with Subscriber(config.publish.endpoint, "cam0", topics=("frame", "image"), rcvhwm=1000,
                        max_age_ms=None) as sub, \
                NodeThread(Node.from_config(config)) as node:
            while node.alive or len(frames) < FRAMES:  # the node ends by itself after its last frame
                msg = sub.recv(timeout=0.1)
                if isinstance(msg, FrameMessage):
                    frames[msg.frame_index] = msg
                elif isinstance(msg, ImageMessage):
                    images[msg.frame_index] = msg
        last = FRAMES - 1
        shown = wait_until(lambda: state()["frameIndex"] == last and state(), what="the last frame drawn")
        assert shown["imageMatches"]
        screenshot_path = tmp_path / "viewer.png"
        assert browser.save_screenshot(str(screenshot_path))
    finally:
        viewer.close()
    screen = cv2.imread(str(screenshot_path))
    assert screen is not None, "the screenshot cannot be read"
    rect = browser.execute_script("const r = document.getElementById('frame').getBoundingClientRect();"
                                  "return [r.left, r.top];")
    msg, scale = frames[last], shown["scale"]
    left, top = round(rect[0]), round(rect[1])
    drawn = screen[top:top + msg.height * scale, left:left + msg.width * scale]
    sampled = drawn[scale // 2::scale, scale // 2::scale].astype(int)  # one screen pixel per id-map pixel
    decoded = cv2.imdecode(np.frombuffer(images[last].data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None, "the image topic's JPEG cannot be decoded"
    picture = decoded.astype(int)
    overlaid = np.abs(sampled - picture).max(axis=2) > DIFFERS

    things = np.zeros(msg.id_map.shape, np.uint8)
    for obj in msg.objects:
        if obj.is_thing:
            things |= msg.mask(obj.id)
    assert things.sum() == 2 * 14 * 14
    inside = cv2.erode(things, np.ones((3, 3), np.uint8)).astype(bool)
    outside = ~cv2.dilate(things, np.ones((3, 3), np.uint8)).astype(bool)
    for label in shown["labels"]:  # the labels' text boxes cover some pixels on purpose
        x0, y0 = int(label["x"] // scale), int(label["y"] // scale)
        outside[y0:y0 + int(label["h"] // scale) + 2, x0:x0 + int(label["w"] // scale) + 2] = False
    assert overlaid[inside].mean() > 0.95, "the masks are not drawn where the message has them"
    assert overlaid[outside].mean() < 0.01, "overlay drawn where the message has no thing"
    # the tracker's speed follows the id once its velocity is valid: 4 px per frame at 4 fps
    assert sorted(label["text"] for label in shown["labels"]) == sorted(
        f"car #{o.instance_id}" + (f" {o.speed:.0f} px/s" if o.velocity_valid else "")
        for o in msg.objects if o.is_thing)
    assert all(o.velocity_valid and round(o.speed) == 16 for o in msg.objects if o.is_thing)
