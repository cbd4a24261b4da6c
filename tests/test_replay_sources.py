"""Replay sources on recordings written here by independent writers: mcap + rosbags' serializers,
rosbag2 (sqlite3 and mcap storage), ROS 1 bags; several encodings; options and typed errors."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from mcap.writer import Writer as McapWriter
from rosbags.rosbag1 import Writer as Bag1Writer
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Bag2Writer
from rosbags.typesys import Stores, get_typestore

from perception.capture.source import open_source, parse_uri
from perception.core.errors import MissingDependencyError
from perception.record.drive import DriveWriter
from perception.record.errors import EmptyRecordingError, RecordingError, TopicError, UnknownEncodingError

ROS2 = get_typestore(Stores.ROS2_HUMBLE)
ROS1 = get_typestore(Stores.ROS1_NOETIC)
START_NS = 1_650_000_000_000_000_000
PERIOD_NS = 100_000_000  # 10 Hz
N_FRAMES = 6


def _bgr(index: int) -> np.ndarray:
    """A picture with structure (so JPEG keeps it) that differs per frame."""
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, :, 0] = np.linspace(0, 200, 48, dtype=np.uint8)
    image[:, :, 1] = (30 * index) % 256
    x = 4 * (index % 9)
    image[8:24, x : x + 8, 2] = 255
    return image


def _stamp(index: int) -> int:
    return START_NS + index * PERIOD_NS + 1234  # odd nanoseconds: stamps must survive exactly


def _message(store: Any, encoding: str, index: int) -> tuple[str, Any]:
    """(msgtype, message) of frame index in an encoding: bgr8/rgb8/mono8 raw, or jpeg/png compressed."""
    types = store.types
    sec, nanosec = divmod(_stamp(index), 1_000_000_000)
    header_fields: dict[str, Any] = {"stamp": types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                     "frame_id": "cam"}
    if "seq" in types["std_msgs/msg/Header"].__dataclass_fields__:
        header_fields["seq"] = index
    header = types["std_msgs/msg/Header"](**header_fields)
    bgr = _bgr(index)
    if encoding in ("jpeg", "png"):
        ok, data = cv2.imencode(".jpg" if encoding == "jpeg" else ".png", bgr)
        assert ok
        msg = types["sensor_msgs/msg/CompressedImage"](header=header, format=encoding, data=data.ravel())
        return "sensor_msgs/msg/CompressedImage", msg
    pixels = {"bgr8": bgr, "rgb8": bgr[:, :, ::-1], "mono8": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)}[encoding]
    pixels = np.ascontiguousarray(pixels)
    step = pixels.shape[1] * (1 if pixels.ndim == 2 else 3)
    msg = types["sensor_msgs/msg/Image"](header=header, height=pixels.shape[0], width=pixels.shape[1],
                                         encoding=encoding, is_bigendian=0, step=step, data=pixels.ravel())
    return "sensor_msgs/msg/Image", msg


def _expected(encoding: str, index: int) -> np.ndarray:
    bgr = _bgr(index)
    if encoding == "mono8":
        return cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return bgr


def write_ros2_mcap(path: Path, topics: dict[str, str], count: int = N_FRAMES) -> Path:
    """A ROS 2 style MCAP (ros2msg schemas, CDR by rosbags' serializer) with one topic per encoding."""
    with path.open("wb") as stream:
        writer = McapWriter(stream)
        writer.start(profile="ros2", library="test")
        channels = {}
        for topic, encoding in topics.items():
            msgtype, _ = _message(ROS2, encoding, 0)
            msgdef, _ = ROS2.generate_msgdef(msgtype, ros_version=2)
            schema = writer.register_schema(msgtype, "ros2msg", msgdef.encode())
            channels[topic] = writer.register_channel(topic, "cdr", schema)
        for i in range(count):
            for topic, encoding in topics.items():
                msgtype, msg = _message(ROS2, encoding, i)
                log_time = _stamp(i) + 5_000_000  # received 5 ms after capture
                writer.add_message(channels[topic], log_time, bytes(ROS2.serialize_cdr(msg, msgtype)), log_time)
        writer.finish()
    return path


def write_rosbag2(path: Path, topics: dict[str, str], storage: StoragePlugin) -> Path:
    with Bag2Writer(path, version=9, storage_plugin=storage) as writer:
        connections = {}
        for topic, encoding in topics.items():
            msgtype, _ = _message(ROS2, encoding, 0)
            connections[topic] = writer.add_connection(topic, msgtype, typestore=ROS2)
        for i in range(N_FRAMES):
            for topic, encoding in topics.items():
                msgtype, msg = _message(ROS2, encoding, i)
                writer.write(connections[topic], _stamp(i) + 5_000_000, ROS2.serialize_cdr(msg, msgtype))
    return path


def write_ros1_bag(path: Path, topics: dict[str, str]) -> Path:
    with Bag1Writer(path) as writer:
        connections = {}
        for topic, encoding in topics.items():
            msgtype, _ = _message(ROS1, encoding, 0)
            connections[topic] = writer.add_connection(topic, msgtype, typestore=ROS1)
        for i in range(N_FRAMES):
            for topic, encoding in topics.items():
                msgtype, msg = _message(ROS1, encoding, i)
                writer.write(connections[topic], _stamp(i) + 5_000_000, ROS1.serialize_ros1(msg, msgtype))
    return path


ALL_ENCODINGS = {"/cam/bgr": "bgr8", "/cam/rgb": "rgb8", "/cam/mono": "mono8", "/cam/jpeg": "jpeg",
                 "/cam/png": "png"}

Fixture = Callable[[Path], tuple[str, Path]]
FORMATS: dict[str, Fixture] = {
    "ros2-mcap-file": lambda d: ("mcap", write_ros2_mcap(d / "drive.mcap", ALL_ENCODINGS)),
    "rosbag2-sqlite3": lambda d: ("rosbag", write_rosbag2(d / "bag_sqlite", ALL_ENCODINGS, StoragePlugin.SQLITE3)),
    "rosbag2-mcap": lambda d: ("rosbag", write_rosbag2(d / "bag_mcap", ALL_ENCODINGS, StoragePlugin.MCAP)),
    "ros1-bag": lambda d: ("rosbag", write_ros1_bag(d / "drive.bag", ALL_ENCODINGS)),
    # the .mcap file inside a rosbag2 folder is a plain MCAP file too
    "rosbag2-mcap-file-as-mcap": lambda d: ("mcap", next(
        write_rosbag2(d / "bag_mcap", ALL_ENCODINGS, StoragePlugin.MCAP).glob("*.mcap"))),
}


def read_all(uri: str, limit: int = 1000) -> list[tuple[np.ndarray, int]]:
    source = open_source(uri)
    source.open()
    frames: list[tuple[np.ndarray, int]] = []
    try:
        while len(frames) < limit and (item := source.read()) is not None:
            frames.append(item)
    finally:
        source.close()
    return frames


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("topic", sorted(ALL_ENCODINGS))
def test_every_frame_in_order_with_recorded_stamps(tmp_path: Path, fmt: str, topic: str) -> None:
    scheme, path = FORMATS[fmt](tmp_path)
    frames = read_all(f"{scheme}:{path}?topic={topic}")
    assert [stamp for _, stamp in frames] == [_stamp(i) for i in range(N_FRAMES)]
    encoding = ALL_ENCODINGS[topic]
    for i, (bgr, _) in enumerate(frames):
        assert bgr.shape == (32, 48, 3)
        assert bgr.dtype == np.uint8
        if encoding == "jpeg":
            assert np.abs(bgr.astype(int) - _expected(encoding, i)).mean() < 4
        else:
            np.testing.assert_array_equal(bgr, _expected(encoding, i))


def test_plain_paths_resolve_to_replay_schemes(tmp_path: Path) -> None:
    bag2 = write_rosbag2(tmp_path / "bag", {"/c": "bgr8"}, StoragePlugin.SQLITE3)
    assert parse_uri(str(tmp_path / "x.mcap")).scheme == "mcap"
    assert parse_uri(f"{tmp_path / 'x.mcap'}?loop=1&start=2").options == {"loop": "1", "start": "2"}
    assert parse_uri(str(tmp_path / "x.bag")).scheme == "rosbag"
    assert parse_uri(str(bag2)).scheme == "rosbag"
    assert len(read_all(str(bag2))) == N_FRAMES


def test_our_drive_files_replay_through_mcap_scheme(tmp_path: Path) -> None:
    path = tmp_path / "ours.mcap"
    with DriveWriter(path, image_format="raw") as writer:
        for i in range(N_FRAMES):
            writer.write_frame(_stamp(i), _bgr(i))
    frames = read_all(str(path))
    assert [s for _, s in frames] == [_stamp(i) for i in range(N_FRAMES)]
    np.testing.assert_array_equal(frames[3][0], _bgr(3))


def test_start_end_select_seconds_from_the_first_frame_stamp(tmp_path: Path) -> None:
    path = write_ros2_mcap(tmp_path / "d.mcap", {"/c": "bgr8"}, count=20)
    # frames every 100 ms; start is inclusive, end exclusive, both counted from frame 0's stamp
    frames = read_all(f"mcap:{path}?start=0.5&end=1.0")
    assert [s for _, s in frames] == [_stamp(i) for i in range(5, 10)]
    bag = write_ros1_bag(tmp_path / "d.bag", {"/c": "rgb8"})
    assert [s for _, s in read_all(f"rosbag:{bag}?start=0.2")] == [_stamp(i) for i in range(2, N_FRAMES)]


def test_loop_restarts_with_increasing_stamps(tmp_path: Path) -> None:
    path = write_ros2_mcap(tmp_path / "d.mcap", {"/c": "png"})
    frames = read_all(f"mcap:{path}?loop=1", limit=3 * N_FRAMES + 2)
    stamps = [s for _, s in frames]
    assert len(stamps) == 3 * N_FRAMES + 2
    assert all(b - a == PERIOD_NS for a, b in itertools.pairwise(stamps))
    np.testing.assert_array_equal(frames[N_FRAMES][0], frames[0][0])


def test_log_time_stamps_on_request(tmp_path: Path) -> None:
    path = write_ros2_mcap(tmp_path / "d.mcap", {"/c": "mono8"})
    assert [s for _, s in read_all(f"mcap:{path}?stamp=log")] == [_stamp(i) + 5_000_000 for i in range(N_FRAMES)]


def _drain(uri: str) -> None:
    source = open_source(uri)
    try:
        source.open()
        while source.read() is not None:
            pass
    finally:
        source.close()


def _error_of(uri: str) -> RecordingError:
    with pytest.raises(RecordingError) as info:
        _drain(uri)
    return info.value


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_ambiguous_or_missing_topic_lists_the_image_topics(tmp_path: Path, fmt: str) -> None:
    scheme, path = FORMATS[fmt](tmp_path)
    ambiguous = _error_of(f"{scheme}:{path}")
    assert isinstance(ambiguous, TopicError)
    assert "several image topics" in str(ambiguous)
    assert str(path) in str(ambiguous)
    assert all(topic in str(ambiguous) for topic in ALL_ENCODINGS)
    missing = _error_of(f"{scheme}:{path}?topic=/front/image")
    assert isinstance(missing, TopicError)
    assert "'/front/image' is not in" in str(missing)
    assert "/cam/jpeg" in str(missing)


def test_non_image_topic_and_empty_range_are_typed_errors(tmp_path: Path) -> None:
    path = tmp_path / "mixed.mcap"
    write_ros2_mcap(path, {"/c": "bgr8"})
    bag = tmp_path / "mixed.bag"
    with Bag1Writer(bag) as writer:
        conn = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=ROS1)
        msg = ROS1.types["std_msgs/msg/String"](data="hi")
        writer.write(conn, 1, ROS1.serialize_ros1(msg, "std_msgs/msg/String"))
    not_image = _error_of(f"rosbag:{bag}?topic=/chatter")
    assert isinstance(not_image, TopicError)
    assert "not an image" in str(not_image)
    no_images = _error_of(f"rosbag:{bag}")
    assert isinstance(no_images, TopicError)
    assert "/chatter (std_msgs/msg/String)" in str(no_images)
    late = _error_of(f"mcap:{path}?start=100")
    assert isinstance(late, EmptyRecordingError)
    assert "no messages on '/c' between 100 s" in str(late)


def test_empty_bag_and_unknown_encoding(tmp_path: Path) -> None:
    empty = tmp_path / "empty.bag"
    with Bag1Writer(empty) as writer:
        writer.add_connection("/c", "sensor_msgs/msg/Image", typestore=ROS1)
    error = _error_of(f"rosbag:{empty}")
    assert isinstance(error, EmptyRecordingError)
    assert "empty.bag" in str(error)

    odd = tmp_path / "odd.bag"
    with Bag1Writer(odd) as writer:
        conn = writer.add_connection("/c", "sensor_msgs/msg/Image", typestore=ROS1)
        _, msg = _message(ROS1, "bgr8", 0)
        writer.write(conn, 1, ROS1.serialize_ros1(_with(msg, encoding="yuv422_yuy2"), "sensor_msgs/msg/Image"))
    unknown = _error_of(f"rosbag:{odd}")
    assert isinstance(unknown, UnknownEncodingError)
    assert "'yuv422_yuy2'" in str(unknown)
    assert "rgb8" in str(unknown)
    assert "odd.bag" in str(unknown)
    assert "'/c'" in str(unknown)


def _with(msg: Any, **changes: Any) -> Any:
    fields: Sequence[str] = [f for f in msg.__dataclass_fields__ if f != "__msgtype__"]
    return type(msg)(**{f: changes.get(f, getattr(msg, f)) for f in fields})


def test_missing_rosbags_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bag = write_ros1_bag(tmp_path / "d.bag", {"/c": "bgr8"})
    monkeypatch.setitem(sys.modules, "rosbags.rosbag1", None)  # as if rosbags were not installed
    with pytest.raises(MissingDependencyError, match=r"perception-node\[replay\]"):
        open_source(f"rosbag:{bag}").open()
