"""Shared builders for the wire tests: deterministic segmentations, results, endpoints."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from perception.core.frame import monotonic_ns
from perception.core.result import FrameResult
from perception.core.segmentation import Segmentation, Segments
from perception.wire.messages import FrameMessage, Message, StatusMessage
from perception.wire.publisher import Publisher
from perception.wire.schema import Kind
from perception.wire.subscriber import Subscriber

CLASSES = [
    {"id": 0, "name": "road", "thing": False},
    {"id": 1, "name": "person", "thing": True},
    {"id": 2, "name": "car", "thing": True},
]
METADATA = {"model": {"name": "test-model", "classes": CLASSES}, "input": {"width": 64, "height": 48}}


def scene(width: int = 64, height: int = 48, shift: int = 0) -> Segmentation:
    """Road (stuff) along the bottom, two cars and a person; `shift` moves the things right."""
    id_map = np.zeros((height, width), np.uint16)
    id_map[height * 2 // 3 :, :] = 1
    id_map[height // 4 : height // 2, 2 + shift : width // 4 + shift] = 2
    id_map[height // 3 : height * 2 // 3, width // 2 + shift : width // 2 + width // 8 + shift] = 3
    id_map[height // 8 : height // 3, width - width // 5 : width - 2] = 4
    return Segmentation.from_id_map(
        id_map,
        class_ids=np.array([0, 2, 2, 1]),
        scores=np.array([1.0, 0.9, 0.75, 0.5]),
        is_thing=np.array([False, True, True, True]),
    )


def wide_scene(width: int = 40, height: int = 30) -> Segmentation:
    """A uint32 id map whose one segment id does not fit in uint16."""
    id_map = np.zeros((height, width), np.uint32)
    id_map[5:15, 10:30] = 70000
    segments = Segments(
        ids=np.array([70000], np.uint32),
        class_ids=np.array([1], np.int32),
        instance_ids=np.array([7], np.uint32),
        is_thing=np.array([True]),
        scores=np.array([0.625], np.float32),
        bboxes=np.array([[10, 5, 30, 15]], np.int32),
        areas=np.array([200], np.int64),
    )
    return Segmentation(id_map=id_map, segments=segments)


def result(index: int, seg: Segmentation | None = None, camera: str = "cam0", stamped: bool = True) -> FrameResult:
    seg = seg if seg is not None else scene()
    h, w = seg.shape
    now = monotonic_ns()
    stamps = {"capture": now - 5_000_000, "dequeue": now - 4_000_000, "inference": now - 1_000_000} if stamped else {}
    return FrameResult(camera, index, 1_700_000_000_000_000_000 + index * 33_333_333, w, h, seg, stamps)


def ipc_endpoint(tmp_path: Path, name: str = "wire") -> str:
    return f"ipc://{tmp_path / name}.sock"


def frames(sub: Subscriber, timeout: float = 2.0, count: int | None = None) -> Iterator[FrameMessage]:
    for msg in sub.messages(timeout=timeout):
        if isinstance(msg, FrameMessage):
            yield msg
            count = None if count is None else count - 1
            if count == 0:
                return


M = TypeVar("M", bound=Message)


def first(sub: Subscriber, kind: type[M], timeout: float = 5.0) -> M:
    for msg in sub.messages(timeout=timeout):
        if isinstance(msg, kind):
            return msg
    raise AssertionError(f"no {kind.__name__} within {timeout} s")


def wait_subscribed(pub: Publisher, sub: Subscriber, kind: Kind = Kind.FRAME, timeout: float = 10.0) -> None:
    """Slow-joiner handshake after a reconnect: libzmq re-sends a SUB's subscriptions only when the
    subscriber's thread calls into its socket, so poll the subscriber while the publisher waits."""
    deadline = monotonic_ns() + int(timeout * 1e9)
    while not pub.wait_for_subscription(kind, timeout_s=0.05):
        leftover = sub.recv(timeout=0.01)
        assert leftover is None or leftover.kind is not Kind.FRAME, "unexpected frame during handshake"
        assert monotonic_ns() < deadline, f"no {kind.value} subscription within {timeout} s"


def free_tcp_endpoint() -> str:
    """A loopback tcp endpoint with a port that was free a moment ago (for a node in a subprocess)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def read_until_stopped(sub: Subscriber, on_frame: Callable[[FrameMessage], None],
                       timeout: float = 60.0) -> StatusMessage | None:
    """Hand each frame to on_frame until the node's `stopped` status (returned), or None on silence."""
    for msg in sub.messages(timeout=timeout):
        if isinstance(msg, FrameMessage):
            on_frame(msg)
        elif isinstance(msg, StatusMessage) and msg.state == "stopped":
            return msg
    return None
