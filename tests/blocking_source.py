"""A live test camera whose open() or read() really blocks, as a hung USB driver or a dead stream does.

URI: blocking:?fps=100&block_after=N&hold_open=0&opened=PATH&total=0

- block_after=N: the first instance's read() blocks after N frames, on an Event nobody sets
  unless the test calls release_all(); later instances (the node's reopened camera) never block;
- hold_open=1: open() blocks instead (in short sleeps, so a signal in the main thread is served);
- opened=PATH: each open() appends a line to PATH, so a test in another process can wait for it;
- total=N: the stream ends after N frames per instance (0 = endless).

Registered as `blocking` by tests.fakes.install, in this process and (PERCEPTION_SOURCES) in child nodes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from perception.capture.source import SourceUri


class BlockingCamera:
    live = True
    instances: ClassVar[list[BlockingCamera]] = []

    def __init__(self, uri: SourceUri) -> None:
        uri.check_options(("fps", "block_after", "hold_open", "opened", "total"))
        self.uri = uri
        self.fps = uri.float_option("fps", 100.0)
        self.block_after = uri.int_option("block_after", 0) if not BlockingCamera.instances else 0
        self.hold_open = uri.option("hold_open", "0") == "1"
        self.opened_file = uri.option("opened", "")
        self.total = uri.int_option("total", 0)
        self.delivered = 0
        self.blocked = threading.Event()  # set once read() is stuck
        self.unblock = threading.Event()
        self.closed = False
        BlockingCamera.instances.append(self)

    @classmethod
    def release_all(cls) -> None:
        for camera in cls.instances:
            camera.unblock.set()

    def open(self) -> None:
        self.closed = False
        if self.opened_file:
            with Path(self.opened_file).open("a") as marker:
                marker.write(f"open {len(BlockingCamera.instances)}\n")
        while self.hold_open:
            time.sleep(0.05)

    def read(self) -> tuple[np.ndarray, int] | None:
        if self.total and self.delivered >= self.total:
            return None
        if self.block_after and self.delivered == self.block_after:
            self.blocked.set()
            self.unblock.wait()  # forever, unless the test releases it
        time.sleep(1.0 / self.fps)
        image = np.full((48, 64, 3), 40 + self.delivered % 200, np.uint8)
        self.delivered += 1
        return image, time.time_ns()

    def close(self) -> None:
        self.closed = True
