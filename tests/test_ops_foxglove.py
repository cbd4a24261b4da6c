"""--foxglove: a WebSocket client speaking the Foxglove protocol receives a live node's images and annotations."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from perception.runtime.node import Node
from tests.node_helpers import run_cli, write_launch
from tests.ops_support import NodeThread, node_config
from tests.waiting import wait_until

pytest.importorskip("foxglove", reason="foxglove-sdk is not installed (pip install -e '.[foxglove]')")
sync_client = pytest.importorskip("websockets.sync.client", reason="websockets is not installed ([dev])")

SUBPROTOCOL = "foxglove.sdk.v1"
MESSAGE_DATA = 0x01  # binary opcode: subscription id (u32), log time (u64), payload


def test_foxglove_client_receives_images_annotations_status_and_stats(tmp_path: Path) -> None:
    config = node_config(tmp_path, "fake:?fps=30", foxglove="127.0.0.1:0")
    node = Node.from_config(config)
    with NodeThread(node):
        live = wait_until(lambda: node.ops.foxglove, what="the Foxglove server")
        with sync_client.connect(f"ws://127.0.0.1:{live.address.port}", subprotocols=[SUBPROTOCOL],
                                 open_timeout=10) as ws:
            channels: dict[str, dict[str, Any]] = {}
            while len(channels) < 4:
                message = ws.recv(timeout=10)
                if isinstance(message, str) and json.loads(message)["op"] == "advertise":
                    channels.update({c["topic"]: c for c in json.loads(message)["channels"]})
            assert channels["/perception/cam0/image"]["schemaName"] == "foxglove.CompressedImage"
            assert channels["/perception/cam0/annotations"]["schemaName"] == "foxglove.ImageAnnotations"
            assert channels["/perception/cam0/annotations"]["encoding"] == "json"
            topics = dict(enumerate(sorted(channels), start=1))
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                {"id": i, "channelId": channels[topic]["id"]} for i, topic in topics.items()]}))
            received: dict[str, bytes] = {}
            while len(received) < 4:
                message = ws.recv(timeout=10)
                if isinstance(message, bytes) and message[0] == MESSAGE_DATA:
                    subscription, _log_time = struct.unpack_from("<IQ", message, 1)
                    received.setdefault(topics[subscription], message[13:])
    image = received["/perception/cam0/image"]
    assert b"\xff\xd8\xff" in image and b"jpeg" in image  # protobuf CompressedImage holding a JPEG
    annotations = json.loads(received["/perception/cam0/annotations"])
    assert set(annotations) >= {"timestamp", "points", "texts"}
    assert json.loads(received["/perception/cam0/status"])["state"] in ("ready", "starting", "warming_up")
    assert "end_to_end" in json.loads(received["/perception/cam0/stats"])


def test_foxglove_public_address_is_refused(tmp_path: Path) -> None:
    launch = write_launch(tmp_path, "fake:?fps=30", f"ipc://{tmp_path}/n.sock")
    result = run_cli("run", str(launch), "--foxglove", "0.0.0.0:8765", "--quiet")
    assert result.returncode == 2
    assert "refusing to serve Foxglove on non-loopback address 0.0.0.0:8765" in result.stderr
