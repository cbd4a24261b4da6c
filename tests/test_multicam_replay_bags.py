"""`--source rosbag:BAG?topics=/front,/rear`: one camera per recorded image topic, each fed its own frames.

The bags are written here by the `rosbags` library (rosbag2 with sqlite3 and mcap storage, and a
ROS 1 bag), with a different number of frames and different stamps per topic, so a camera fed
another's frames, or its own out of order, shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rosbags.rosbag1 import Writer as Bag1Writer
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Bag2Writer

from perception.cli import build_parser
from perception.commands.run import build_config
from perception.record.errors import TopicError
from perception.runtime.config import override
from perception.runtime.node import Node
from perception.runtime.parts import build_parts
from tests.node_helpers import run_cli
from tests.test_multicam import RawListener, _balanced, _launch
from tests.test_replay_sources import ROS1, ROS2, _message, _stamp

# topic -> the frame indices recorded on it (stamps follow from the index)
TOPICS = {"/front/image_raw": range(5), "/rear/image/compressed": range(20, 23)}
ENCODINGS = {"/front/image_raw": "bgr8", "/rear/image/compressed": "jpeg"}


def _write_bag(folder: Path, kind: str) -> Path:
    """Frames interleaved by time, as a recorder logs them: rear's fall between front's."""
    ros1 = kind == "ros1"
    store = ROS1 if ros1 else ROS2
    path = folder / ("drive.bag" if ros1 else f"bag_{kind}")
    writer: Any = Bag1Writer(path) if ros1 else Bag2Writer(
        path, version=9, storage_plugin=StoragePlugin.SQLITE3 if kind == "sqlite3" else StoragePlugin.MCAP)
    messages = sorted(((_stamp(i) + (50_000_000 if topic.startswith("/rear") else 0), topic, i)
                       for topic, indices in TOPICS.items() for i in indices))
    with writer:
        connections = {topic: writer.add_connection(topic, _message(store, ENCODINGS[topic], 0)[0], typestore=store)
                       for topic in TOPICS}
        for log_time, topic, i in messages:
            msgtype, msg = _message(store, ENCODINGS[topic], i)
            data = store.serialize_ros1(msg, msgtype) if ros1 else store.serialize_cdr(msg, msgtype)
            writer.write(connections[topic], log_time, data)
    return path


def _cli_config(tmp_path: Path, source: str) -> Any:
    launch = _launch(tmp_path, {})
    args = build_parser().parse_args(["run", str(launch), "--source", source, "--rate", "0"])
    return override(build_config(args), "publish", wait_subscribers=1, sndhwm=10_000)


@pytest.mark.parametrize("kind", ["sqlite3", "mcap", "ros1"])
def test_each_topic_of_a_bag_is_a_camera_fed_its_own_frames_in_recorded_order(tmp_path: Path, kind: str) -> None:
    bag = _write_bag(tmp_path, kind)
    config = _cli_config(tmp_path, f"rosbag:{bag}?topics={','.join(TOPICS)}")
    assert [c.name for c in config.cameras] == ["front", "rear"]
    listener = RawListener(config.publish.endpoint, ["front", "rear"])
    report = Node(config, build_parts(config)).run()
    listener.join()
    for camera, topic in zip(("front", "rear"), TOPICS, strict=True):
        frames = listener.frames(camera)
        assert [f.stamp_ns for f in frames] == [_stamp(i) for i in TOPICS[topic]], camera  # header stamps, in order
        assert [f.seq for f in frames] == list(range(len(TOPICS[topic])))
        assert report.cameras[camera]["counters"]["processed"] == len(TOPICS[topic]) and _balanced(report, camera)


def test_a_topic_the_bag_does_not_have_is_one_line_naming_the_topics_it_has(tmp_path: Path) -> None:
    bag = _write_bag(tmp_path, "ros1")
    config = _cli_config(tmp_path, f"rosbag:{bag}?topics=/front/image_raw,/side/image_raw")
    with pytest.raises(TopicError, match="topic '/side/image_raw' is not in bag") as error:
        Node(config, build_parts(config)).run()
    assert "/front/image_raw" in str(error.value) and "/rear/image/compressed" in str(error.value)
    done = run_cli("run", str(_launch(tmp_path / "cli", {})), "--quiet", "--source",
                   f"rosbag:{bag}?topics=/front/image_raw,/side/image_raw")
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()
    assert len(last) == 1 and "'/side/image_raw' is not in bag" in last[0] and "?topics=" in last[0], done.stderr
