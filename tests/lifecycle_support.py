"""Runs a node until a condition on what a subscriber heard, for the engine-lifecycle tests.

The TensorRT path needs the fakes in this process (the node loads plans) and in the builder
process the node starts (it builds them): `gpu_fakes` installs both, and `builder(...)` sets
how the next builds behave.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from perception.core.errors import PerceptionError
from perception.runtime.config import NodeConfig, load_launch, override
from perception.runtime.node import Node
from perception.runtime.parts import build_parts
from perception.wire.messages import FrameMessage, Message, MetadataMessage, StatusMessage
from perception.wire.subscriber import Subscriber
from tests import trt_fakes
from tests.node_helpers import image_folder, write_launch
from tests.test_trt_engine import REAL_GPU


@dataclass
class Heard:
    messages: list[Message]
    error: PerceptionError | None

    def statuses(self) -> list[StatusMessage]:
        return [m for m in self.messages if isinstance(m, StatusMessage)]

    def details(self, state: str | None = None) -> list[str]:
        return [m.detail for m in self.statuses() if state is None or m.state == state]

    def frames(self) -> list[FrameMessage]:
        return [m for m in self.messages if isinstance(m, FrameMessage)]

    def engines(self) -> list[str]:
        """The engine each metadata message named, in order."""
        return [str(m.metadata["engine"]) for m in self.messages if isinstance(m, MetadataMessage)]

    def index_of(self, predicate: Callable[[Message], bool]) -> int:
        return next(i for i, m in enumerate(self.messages) if predicate(m))


def status_with(text: str, state: str | None = None) -> Callable[[Message], bool]:
    return lambda m: isinstance(m, StatusMessage) and text in m.detail and (state is None or m.state == state)


def frames_after(text: str, n: int) -> Callable[[list[Message]], bool]:
    """Done once a status containing text was heard and then n more frames."""
    def done(heard: list[Message]) -> bool:
        seen = next((i for i, m in enumerate(heard) if status_with(text)(m)), None)
        return seen is not None and sum(isinstance(m, FrameMessage) for m in heard[seen:]) >= n
    return done


def lifecycle_launch(folder: Path, cache: Path, frames: int = 600, fps: float = 20.0, **model: Any) -> NodeConfig:
    """A node on the tiny test model: engine tensorrt, fallback onnxruntime, a long image replay."""
    images = image_folder(folder / "images", frames)
    endpoint = f"ipc://{folder / 'node.sock'}"
    launch = write_launch(folder, f"images:{images}?fps={fps:g}", endpoint)
    config = load_launch(launch)
    config = override(config, "source", rate=1.0)
    config = override(config, "model", engine="tensorrt", fallback="onnxruntime", cache_dir=cache, **model)
    return override(config, "publish", wait_subscribers=1, sndhwm=1000)


def serve_until(config: NodeConfig, done: Callable[[list[Message]], bool], timeout_s: float = 120.0) -> Heard:
    """Run the node in a thread; stop it once done(heard so far); return everything up to "stopped"."""
    heard: list[Message] = []
    failure: list[PerceptionError] = []
    node = Node(config, build_parts(config))

    def run() -> None:
        try:
            node.run()
        except PerceptionError as exc:
            failure.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    with Subscriber(config.publish.endpoint, "cam0", topics=("frame", "status", "meta"), rcvhwm=10000,
                    max_age_ms=None) as sub:
        runner.start()
        deadline = time.monotonic() + timeout_s
        stopping = False
        while time.monotonic() < deadline:
            msg = sub.recv(timeout=0.1)
            if msg is None:
                if not runner.is_alive() and stopping:
                    break
                continue
            heard.append(msg)
            if not stopping and done(heard):
                node.stop()
                stopping = True
            if isinstance(msg, StatusMessage) and msg.state == "stopped":
                break
        else:
            node.stop()
    runner.join(timeout=30)
    assert not runner.is_alive(), "the node did not stop"
    assert stopping, f"the node stopped before the condition was met; statuses: {Heard(heard, None).details()}"
    return Heard(heard, failure[0] if failure else None)


@pytest.fixture
def gpu_fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., None]:
    """Fake TensorRT (and pycuda without a GPU) here and in the builder process; returns builder(**behaviour)."""
    if not REAL_GPU:
        for name, module in trt_fakes.fake_pycuda().items():
            monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "tensorrt", trt_fakes.make_fake_tensorrt())
    site = trt_fakes.fake_site(tmp_path / "fake-site", with_pycuda=not REAL_GPU)

    def builder(**behaviour: Any) -> None:
        for name, value in trt_fakes.child_environment(site, **behaviour).items():
            monkeypatch.setenv(name, value)

    builder()
    return builder


def check_contiguous(heard: Heard) -> list[int]:
    """The frames' sequence numbers, asserted gapless from the node's first frame."""
    frames = heard.frames()
    assert frames and frames[0].frame_index == 0, "the first published frame is not the source's first"
    seqs = [f.seq for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "gap in the frame sequence"
    assert all(f.missed == 0 for f in frames)
    return seqs
