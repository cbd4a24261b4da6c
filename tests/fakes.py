"""A fake live camera for tests: behaves like a V4L2 camera, scripted failures included.

It delivers frames at its own pace on a wall clock, can vanish mid-stream (read raises
SourceLost, as a real unplugged camera makes cv2 read fail), refuse reopening a few
times, then come back.
"""

from __future__ import annotations

import os
import threading
import time
from typing import ClassVar

import numpy as np

from perception.capture.errors import SourceError, SourceLost
from perception.capture.source import PLUGIN_VARIABLE, SOURCES, SourceUri


class FakeCamera:
    """URI: fake:?fps=50&lose_after=20&fail_opens=2&width=64&height=48&total=0.

    pause_after=N&pause_s=S: after N frames the camera goes silent for S seconds (read blocks, as
    a stalled USB camera does) and then delivers again; only the first instance of a URI in this
    process pauses, so the camera the node reopens after abandoning the stuck read does not.
    live=0 makes it a replay whose lose_after failure cannot be reconnected.
    """
    instances: ClassVar[list[FakeCamera]] = []
    paused: ClassVar[set[str]] = set()  # URIs whose pause has happened

    def __init__(self, uri: SourceUri) -> None:
        self.uri = uri
        self.live = uri.option("live", "1") == "1"
        self.pause_after = uri.int_option("pause_after", 0)
        self.pause_s = uri.float_option("pause_s", 0.0)
        self.fps = uri.float_option("fps", 50.0)
        self.lose_after = uri.int_option("lose_after", 0)
        self.fail_opens = uri.int_option("fail_opens", 0)
        self.absent = uri.option("absent", "0") == "1"
        self.total = uri.int_option("total", 0)  # 0 = endless
        self.width = uri.int_option("width", 64)
        self.height = uri.int_option("height", 48)
        self.opens = 0
        self.delivered = 0
        self._is_open = False
        self._since_open = 0
        self._lost_once = False
        self._next_due = 0.0
        self.lock = threading.Lock()
        FakeCamera.instances.append(self)

    def open(self) -> None:
        if self.absent:
            raise SourceError("camera fake is not there", "plug it in")
        self.opens += 1
        if self._lost_once and self.fail_opens > 0:
            self.fail_opens -= 1
            raise SourceError("camera fake cannot be opened", "wait")
        self._is_open = True
        self._since_open = 0
        self._next_due = time.monotonic()

    def read(self) -> tuple[np.ndarray, int] | None:
        if not self._is_open:
            raise SourceLost("not open")
        if self.total and self.delivered >= self.total:
            return None
        if self.lose_after and not self._lost_once and self._since_open >= self.lose_after:
            self._lost_once = True
            self._is_open = False
            raise SourceLost("camera unplugged")
        if self.pause_after and self.delivered == self.pause_after and self.uri.raw not in FakeCamera.paused:
            self.pause_after = 0
            FakeCamera.paused.add(self.uri.raw)
            time.sleep(self.pause_s)
            self._next_due = time.monotonic()
        delay = self._next_due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next_due = max(self._next_due + 1.0 / self.fps, time.monotonic())
        image = np.full((self.height, self.width, 3), self.delivered % 256, np.uint8)
        self.delivered += 1
        self._since_open += 1
        return image, time.time_ns()

    def close(self) -> None:
        self._is_open = False


def install() -> None:
    """In this process, and in child nodes started by the tests (through PERCEPTION_SOURCES)."""
    SOURCES.register("fake", "tests.fakes:FakeCamera")
    SOURCES.register("blocking", "tests.blocking_source:BlockingCamera")
    os.environ[PLUGIN_VARIABLE] = "fake=tests.fakes:FakeCamera,blocking=tests.blocking_source:BlockingCamera"
