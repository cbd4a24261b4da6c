"""Shared set-up for node tests: a launch file around the tiny test model, a CLI runner, a listened run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import msgpack
import numpy as np
from mcap.reader import make_reader

from perception.capture.thread import Backoff
from perception.core.errors import PerceptionError
from perception.runtime.config import NodeConfig, override
from perception.runtime.node import Node, RunReport
from perception.runtime.parts import build_parts
from perception.wire.messages import FrameMessage, Message, StatusMessage
from perception.wire.subscriber import Subscriber
from tests.onnx_models import scene, tiny_panoptic

REPO = Path(__file__).resolve().parent.parent


def write_launch(folder: Path, source: str, endpoint: str, extra: str = "") -> Path:
    card = tiny_panoptic(folder / "model")
    launch = folder / "test.toml"
    launch.write_text(f'''[source]
uri = "{source}"
rate = 0.0

[model]
card = "{card}"
threads = 1
warmup_runs = 1

[publish]
endpoint = "{endpoint}"
camera = "cam0"
{extra}
''')
    return launch


def image_folder(folder: Path, n: int, cars: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = scene(cars=cars)
        image[0, 0] = (i % 256,) * 3  # frames differ
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return folder


def video_file(path: Path, n: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (128, 96))
    for _ in range(n):
        writer.write(scene())
    writer.release()
    return path


# header fields that carry time or process identity, not results: excluded from byte identity
VOLATILE = ("epoch", "publish_ns", "stamps")


def published_messages(path: Path, topic: str) -> list[list[bytes]]:
    """Multipart messages of one topic of a recording, with the volatile header fields removed."""
    out = []
    with path.open("rb") as stream:
        for _schema, _channel, message in make_reader(stream).iter_messages(topics=[topic]):
            parts = msgpack.unpackb(message.data)
            header = msgpack.unpackb(parts[1])
            for key in VOLATILE:
                header.pop(key, None)
            out.append([parts[0], msgpack.packb(header), *parts[2:]])
    return out


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "perception", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env, check=False)


def blank(width: int, height: int) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)


@dataclass
class ListenedRun:
    report: RunReport | None
    received: list[Message]
    error: PerceptionError | None

    def statuses(self) -> list[StatusMessage]:
        return [m for m in self.received if isinstance(m, StatusMessage)]

    def states(self) -> list[str]:
        return [m.state for m in self.statuses()]

    def frames(self) -> list[FrameMessage]:
        return [m for m in self.received if isinstance(m, FrameMessage)]


def run_listened(config: NodeConfig, topics: tuple[str, ...] = ("frame", "status", "stats"),
                 backoff: Backoff | None = None, clock: Callable[[], int] | None = None) -> ListenedRun:
    """Run a node in this process with one subscriber that hears everything from "ready" to "stopped".

    The node holds its first frame until the subscriber joined (wait_subscribers), and the
    subscriber stops at the node's last status, so nothing here waits for a guessed time.
    """
    # lock-step replays outrun a Python subscriber: deep queues on both ends keep every frame
    config = override(config, "publish", wait_subscribers=1, sndhwm=1000)
    received: list[Message] = []
    listener = threading.Thread(target=_listen, args=(config.publish.endpoint, topics, received), daemon=True)
    listener.start()
    parts = build_parts(config)
    if backoff is not None:
        parts.backoff = backoff
    if clock is not None:
        parts.clock = clock
    report, error = None, None
    try:
        report = Node(config, parts).run()
    except PerceptionError as exc:
        error = exc
    listener.join(timeout=30)
    assert not listener.is_alive(), "the subscriber never heard the node's last status"
    return ListenedRun(report, received, error)


def _listen(endpoint: str, topics: tuple[str, ...], into: list[Message]) -> None:
    # frames: the node waits for a frame subscriber; status: the last one ends the listening
    with Subscriber(endpoint, "cam0", topics=(*topics, "frame", "status"), rcvhwm=1000, max_age_ms=None) as sub:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = sub.recv(timeout=0.1)
            if msg is None:
                continue
            if msg.kind in topics:
                into.append(msg)
            if isinstance(msg, StatusMessage) and msg.state == "stopped":
                return
