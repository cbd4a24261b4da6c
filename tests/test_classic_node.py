"""Classic cards in the running node: the same topics, tracker and stages as a network's."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.runtime.config import load_launch, override
from perception.runtime.node import Node
from perception.wire.messages import FrameMessage, MetadataMessage, StatusMessage
from perception.wire.subscriber import Subscriber
from tests.classic_support import ENGINES, background

LAUNCH = Path(__file__).resolve().parent.parent / "launch" / "classic_motion.toml"


def _listen(endpoint: str, stop: threading.Event, into: list[object]) -> None:
    with Subscriber(endpoint, "cam0", topics=("frame", "status", "meta"), rcvhwm=1000, max_age_ms=None) as sub:
        while not stop.is_set():
            msg = sub.recv(timeout=0.1)
            if msg is not None:
                into.append(msg)


def _run(source: str, endpoint: str, card: Path = ENGINES / "classic-motion.toml") -> tuple[object, list[object]]:
    config = load_launch(LAUNCH)
    config = override(config, "source", uri=source, rate=0.0)
    config = override(config, "model", card=card)
    config = override(config, "publish", endpoint=endpoint, camera="cam0", wait_subscribers=1, sndhwm=1000)
    received: list[object] = []
    stop = threading.Event()
    listener = threading.Thread(target=_listen, args=(endpoint, stop, received))
    listener.start()
    try:
        report = Node.from_config(config).run()
        deadline = time.monotonic() + 5
        while (not any(isinstance(m, StatusMessage) and m.state == "stopped" for m in received)
               and time.monotonic() < deadline):
            time.sleep(0.02)
    finally:
        stop.set()
        listener.join()
    return report, received


def test_static_camera_publishes_tracked_moving_things(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the rendered scene's cache
    report, received = _run("synthetic:?seed=31&frames=45&camera=static&width=320&height=180",
                            f"ipc://{tmp_path}/classic.sock")
    frames = [m for m in received if isinstance(m, FrameMessage)]
    assert [m.frame_index for m in frames] == list(range(45))
    meta = next(m for m in received if isinstance(m, MetadataMessage))
    assert meta.metadata["model"]["kind"] == "classic" and meta.metadata["engine"] == "classic:motion"
    late = frames[25:]
    things = [o for m in late for o in m.objects if o.is_thing]
    assert things and {o.class_name for o in things} <= {"person", "car"}
    assert all(o.instance_id > 0 for o in things)  # the node's tracker numbered them
    # one track seen over several frames: the tracker followed a segmenter's blobs like a network's
    tracks = [o.instance_id for o in things]
    assert max(tracks.count(t) for t in set(tracks)) >= 5
    assert all(any(o.class_name == "static background" for o in m.objects) for m in late)
    for m in late:  # the id map and the table agree, as for a network
        for o in m.objects:
            assert int(m.mask(o.id).sum()) == o.area
    assert set(report.latency["stages"]) >= {"preprocess", "inference", "postprocess", "publish"}  # type: ignore[attr-defined]


def test_moving_camera_is_reported_on_the_status_topic_not_published_as_one_object(tmp_path: Path) -> None:
    folder = tmp_path / "pan"
    folder.mkdir()
    still = background(180, 640)
    for i in range(30):  # a camera panning 9 px a frame over a textured wall
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.ascontiguousarray(still[:, 9 * i:9 * i + 320]))
    report, received = _run(f"images:{folder}", f"ipc://{tmp_path}/pan.sock")
    statuses = [m for m in received if isinstance(m, StatusMessage) and "camera is moving" in m.detail]
    assert statuses, [m.detail for m in received if isinstance(m, StatusMessage)]
    frames = [m for m in received if isinstance(m, FrameMessage)]
    assert all(not any(o.is_thing and o.area > 0.3 * 320 * 180 for o in m.objects) for m in frames)
    assert report.counters["dropped"].get("error", 0) == len(statuses)  # type: ignore[attr-defined]
