"""examples/ros2_bridge.py's ROS-free conversions on a real node's frame (rclpy is not needed here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

from perception.runtime.config import override
from perception.runtime.node import Node
from perception.wire.messages import FrameMessage
from perception.wire.subscriber import Subscriber
from tests.node_helpers import REPO, image_folder
from tests.ops_support import NodeThread, node_config
from tests.waiting import wait_until


def _bridge() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ros2_bridge", REPO / "examples" / "ros2_bridge.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bridge_maps_ids_classes_and_things_as_docs_ros2_says(tmp_path: Path) -> None:
    bridge = _bridge()
    frames = image_folder(tmp_path / "frames", 3)
    config = override(node_config(tmp_path, f"images:{frames}"), "publish", wait_subscribers=1)
    with Subscriber(config.publish.endpoint, "cam0", topics=("frame",), rcvhwm=100, max_age_ms=None) as sub, \
            NodeThread(Node.from_config(config)):
        msg = wait_until(lambda: (m := sub.recv(timeout=0.1)) and isinstance(m, FrameMessage) and m, what="a frame")
    encoding, ids = bridge.instance_image(msg)
    assert encoding == "mono16" and ids.dtype == np.uint16 and (ids == msg.id_map).all()
    encoding, classes = bridge.semantic_image(msg)
    assert encoding == "mono8"
    for obj in msg.objects:
        assert (classes[msg.mask(obj.id)] == obj.class_id).all()
    assert (classes[msg.id_map == 0] == bridge.VOID_CLASS).all()
    things = [o for o in msg.objects if o.is_thing]
    dets = bridge.detections(msg)
    assert [d["id"] for d in dets] == [str(o.instance_id) for o in things]
    assert all(d["class_id"] == str(o.class_id) for d, o in zip(dets, things, strict=True))
    x0, y0, x1, y1 = things[0].bbox
    assert dets[0]["center"] == ((x0 + x1) / 2, (y0 + y1) / 2) and dets[0]["size"] == (x1 - x0, y1 - y0)
