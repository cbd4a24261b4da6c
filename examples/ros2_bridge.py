"""Bridge one camera of a running perception node into ROS 2 (docs/ros2.md).

Runs where rclpy, sensor_msgs and vision_msgs (4.x) are installed; the perception package does
not depend on ROS. The ROS-free conversions (`instance_image`, `semantic_image`, `detections`)
are plain functions so they can be checked without a ROS installation.

    python examples/ros2_bridge.py --endpoint tcp://127.0.0.1:5560 --camera cam0 [--frame-id front_camera]

Publishes, under /perception/<camera>/:
    instances    sensor_msgs/Image, mono16 (32SC1 for uint32 maps): the panoptic id map
    semantic     sensor_msgs/Image, mono8 or mono16: class id per pixel, VOID_CLASS where void
    label_info   vision_msgs/LabelInfo (transient local): class id -> name, for `semantic`
    detections   vision_msgs/Detection2DArray: one detection per thing (id = track id)
    image        sensor_msgs/CompressedImage (jpeg), when the node publishes its image topic
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from perception.wire.messages import FrameMessage, ImageMessage, MetadataMessage
from perception.wire.subscriber import Subscriber

VOID_CLASS = 255  # semantic pixels of no segment; not in label_info's class map


def instance_image(msg: FrameMessage) -> tuple[str, np.ndarray]:
    """(encoding, pixels) of the id map: mono16 as is; uint32 maps go out as 32SC1 (ids stay below 2**31)."""
    ids = np.asarray(msg.id_map)
    if ids.dtype == np.uint16:
        return "mono16", ids
    return "32SC1", ids.astype(np.int32)


def semantic_image(msg: FrameMessage) -> tuple[str, np.ndarray]:
    """(encoding, pixels): each pixel the class id of its segment (vision_msgs#71 convention)."""
    ids = np.asarray(msg.id_map)
    s = msg.segments
    wide = bool(len(s.class_ids)) and int(s.class_ids.max()) >= VOID_CLASS
    dtype, encoding = (np.uint16, "mono16") if wide else (np.uint8, "mono8")
    lut = np.full(int(ids.max(initial=0)) + 1, VOID_CLASS, dtype)
    lut[s.ids.astype(np.int64)] = s.class_ids
    return encoding, lut[ids]


def detections(msg: FrameMessage) -> list[dict[str, Any]]:
    """Things as Detection2D fields: id = track id (segment id until tracked), class id as a string."""
    out = []
    for obj in msg.objects:
        if not obj.is_thing:
            continue
        x0, y0, x1, y1 = obj.bbox
        out.append({
            "id": str(obj.instance_id or obj.id),
            "class_id": str(obj.class_id),
            "score": obj.score,
            "center": ((x0 + x1) / 2.0, (y0 + y1) / 2.0),
            "size": (float(x1 - x0), float(y1 - y0)),
        })
    return out


def main() -> None:  # pragma: no cover - needs a ROS 2 installation
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header
    from vision_msgs.msg import (
        Detection2D,
        Detection2DArray,
        LabelInfo,
        ObjectHypothesisWithPose,
        VisionClass,
    )

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5560")
    parser.add_argument("--camera", default="cam0")
    parser.add_argument("--frame-id", default=None, help="TF frame of the camera (default: the camera name)")
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node(f"perception_bridge_{args.camera}")
    base = f"/perception/{args.camera}"
    pub_instances = node.create_publisher(Image, f"{base}/instances", 2)
    pub_semantic = node.create_publisher(Image, f"{base}/semantic", 2)
    pub_detections = node.create_publisher(Detection2DArray, f"{base}/detections", 2)
    pub_image = node.create_publisher(CompressedImage, f"{base}/image", 2)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub_labels = node.create_publisher(LabelInfo, f"{base}/label_info", latched)
    frame_id = args.frame_id or args.camera

    def header(stamp_ns: int) -> Header:
        return Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id=frame_id)

    def image(h: Header, encoding: str, pixels: np.ndarray) -> Image:
        return Image(header=h, height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=0,
                     step=pixels.shape[1] * pixels.itemsize, data=pixels.tobytes())

    topics = ("frame", "meta", "image")
    with Subscriber(args.endpoint, args.camera, latest_only=True, topics=topics) as sub:
        while rclpy.ok():
            msg = sub.recv(timeout=0.5)
            if isinstance(msg, MetadataMessage):
                classes = [VisionClass(class_id=i, class_name=n) for i, n in sorted(msg.class_names.items())]
                pub_labels.publish(LabelInfo(header=header(msg.publish_ns), class_map=classes, threshold=0.0))
            elif isinstance(msg, ImageMessage):
                pub_image.publish(CompressedImage(header=header(msg.stamp_ns), format=msg.format, data=msg.data))
            elif isinstance(msg, FrameMessage):
                h = header(msg.stamp_ns)
                pub_instances.publish(image(h, *instance_image(msg)))
                pub_semantic.publish(image(h, *semantic_image(msg)))
                array = Detection2DArray(header=h)
                for d in detections(msg):
                    det = Detection2D(header=h, id=d["id"])
                    det.bbox.center.position.x, det.bbox.center.position.y = d["center"]
                    det.bbox.size_x, det.bbox.size_y = d["size"]
                    hyp = ObjectHypothesisWithPose()
                    hyp.hypothesis.class_id, hyp.hypothesis.score = d["class_id"], d["score"]
                    det.results.append(hyp)
                    array.detections.append(det)
                pub_detections.publish(array)
            rclpy.spin_once(node, timeout_sec=0)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
