"""--metrics and --foxglove on a node with several cameras: each camera its own series and channels.

Read as operators read them: /metrics scraped over real HTTP on a loopback port, and the live
streams through a WebSocket client speaking the Foxglove protocol.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from perception.runtime.config import NodeConfig, load_launch, override
from perception.runtime.node import Node
from tests.ops_support import NodeThread, get
from tests.test_multicam import _launch
from tests.test_ops_metrics import _samples
from tests.waiting import wait_until

CAMERAS = {"front": "fake:?fps=30", "rear": "fake:?fps=20&width=96&height=64"}


def _config(tmp_path: Path, **ops: Any) -> NodeConfig:
    config = override(load_launch(_launch(tmp_path, CAMERAS)), "ops", **ops)
    return override(config, "run", summary=False)


def _of(samples: dict, name: str, camera: str, **labels: str) -> float | None:
    return samples.get((name, frozenset({"camera": camera, **labels}.items())))


def test_every_metric_has_a_series_for_every_camera(tmp_path: Path) -> None:
    node = Node.from_config(_config(tmp_path, metrics="127.0.0.1:0"))
    with NodeThread(node):
        server = wait_until(lambda: node.ops.server, what="metrics server")
        url = f"http://127.0.0.1:{server.address.port}/metrics"

        def processed_by_both() -> dict | None:
            samples = _samples(get(url)[1])
            done = all((_of(samples, "perception_frames_processed_total", c) or 0) >= 3 for c in CAMERAS)
            return samples if done else None

        samples = wait_until(processed_by_both, what="3 frames processed by each camera")
    for camera, uri in CAMERAS.items():
        read = _of(samples, "perception_frames_read_total", camera)
        processed = _of(samples, "perception_frames_processed_total", camera)
        assert read is not None and processed is not None and read >= processed >= 3, camera
        for cause in ("overwritten", "stale", "error", "shutdown"):
            assert _of(samples, "perception_frames_dropped_total", camera, cause=cause) is not None
        assert _of(samples, "perception_source_reconnects_total", camera) == 0
        assert _of(samples, "perception_fps", camera) is not None
        assert _of(samples, "perception_queue_depth", camera, queue="capture") is not None
        assert _of(samples, "perception_node_state", camera, state="ready") == 1
        assert (_of(samples, "perception_end_to_end_latency_seconds_count", camera) or 0) >= 3
        assert (_of(samples, "perception_stage_latency_seconds_count", camera, stage="inference") or 0) >= 3
        assert _of(samples, "perception_node_info", camera, engine="onnxruntime", model="tiny", source=uri,
                   precision="fp32", version=__import__("perception").__version__) == 1
    # the one socket and the one inference queue are counted once, under the first camera
    assert _of(samples, "perception_queue_depth", "front", queue="inference") is not None
    assert _of(samples, "perception_queue_depth", "rear", queue="inference") is None
    assert _of(samples, "perception_subscriptions", "front", topic="frame") is not None
    assert _of(samples, "perception_subscriptions", "rear", topic="frame") is None


def test_a_foxglove_client_gets_each_cameras_own_channels(tmp_path: Path) -> None:
    pytest.importorskip("foxglove", reason="foxglove-sdk is not installed (pip install -e '.[foxglove]')")
    sync_client = pytest.importorskip("websockets.sync.client", reason="websockets is not installed ([dev])")
    from tests.test_ops_foxglove import MESSAGE_DATA, SUBPROTOCOL

    node = Node.from_config(_config(tmp_path, foxglove="127.0.0.1:0"))
    wanted = {f"/perception/{c}/{kind}" for c in CAMERAS for kind in ("image", "annotations", "status", "stats")}
    with NodeThread(node):
        live = wait_until(lambda: node.ops.foxglove, what="the Foxglove server")
        with sync_client.connect(f"ws://127.0.0.1:{live.address.port}", subprotocols=[SUBPROTOCOL],
                                 open_timeout=10) as ws:
            channels: dict[str, dict[str, Any]] = {}
            while not wanted <= set(channels):
                message = ws.recv(timeout=10)
                if isinstance(message, str) and json.loads(message)["op"] == "advertise":
                    channels.update({c["topic"]: c for c in json.loads(message)["channels"]})
            assert set(channels) == wanted
            topics = dict(enumerate(sorted(wanted), start=1))
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                {"id": i, "channelId": channels[topic]["id"]} for i, topic in topics.items()]}))
            received: dict[str, list[bytes]] = {}
            while set(received) != wanted or any(len(v) < 2 for v in received.values()):
                message = ws.recv(timeout=10)
                if isinstance(message, bytes) and message[0] == MESSAGE_DATA:
                    subscription, _log_time = struct.unpack_from("<IQ", message, 1)
                    received.setdefault(topics[subscription], []).append(message[13:])
    for camera, other in (("front", "rear"), ("rear", "front")):
        images = received[f"/perception/{camera}/image"]
        # protobuf CompressedImage: a JPEG whose frame_id is this camera, never the other
        assert all(b"\xff\xd8\xff" in i and camera.encode() in i and other.encode() not in i for i in images)
        assert all(set(json.loads(a)) >= {"timestamp", "points", "texts"}
                   for a in received[f"/perception/{camera}/annotations"])
        assert {json.loads(s)["state"] for s in received[f"/perception/{camera}/status"]} <= {
            "starting", "warming_up", "ready"}
        stats = [json.loads(s) for s in received[f"/perception/{camera}/stats"]]
        assert all("end_to_end" in s and "counters" in s for s in stats)
