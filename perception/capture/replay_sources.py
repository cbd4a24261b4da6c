"""Replay of recorded drives: `mcap:FILE` and `rosbag:PATH` (rosbag2 folder/file, ROS 1 .bag).

Both deliver the frames of one image topic (sensor_msgs Image or CompressedImage) in recorded
order, with the recorded time as stamp_ns; the capture thread paces them (--rate). Options in
the URI query:

    topic=NAME   which image topic (needed only when the recording has several)
    start=S      skip to S seconds after the topic's first frame, by frame stamp (the source's
                 clock: the same in a recording made at --rate 0 as in one made live)
    end=S        stop before S seconds after it
    loop=1       start over at the end; stamps keep increasing (each pass is shifted by the
                 duration of the played range plus one frame interval)
    stamp=header the image header stamp (default; in recordings made by other tools a zero
                 header stamp, i.e. a driver that never set it, falls back to log time), or
    stamp=log    the time the recorder logged the message
    recover=1    (mcap) read a file cut off mid-record up to its last complete chunk

MCAP files are read with the `mcap` package; bags with `rosbags` (the `replay` extra).
Message bytes are decoded by perception.record.ros_images in both cases, so the two paths
accept the same encodings.
"""

from __future__ import annotations

import sqlite3
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from perception.capture.source import SourceUri
from perception.core.errors import require
from perception.record import ros_images
from perception.record.errors import (
    CorruptRecordingError,
    EmptyRecordingError,
    RecordingError,
    TopicError,
    topic_listing,
)
from perception.record.foxglove_images import IMAGE_TYPES as FOXGLOVE_IMAGES
from perception.record.foxglove_images import decode_foxglove_image
from perception.record.mcap_file import McapRecording

RawMessage = tuple[int, str, str, bytes | memoryview]  # log time ns, message type, encoding, bytes


def normalize_type(name: str) -> str:
    """ROS 1 'sensor_msgs/Image' and ROS 2 'sensor_msgs/msg/Image' name the same image type."""
    package, _, rest = name.partition("/")
    return f"{package}/msg/{rest}" if rest and "/" not in rest else name


def is_image_type(name: str) -> bool:
    return normalize_type(name) in (ros_images.IMAGE, ros_images.COMPRESSED_IMAGE) or name in FOXGLOVE_IMAGES


class Container(Protocol):
    """What the replay needs from a recording format."""

    path: Path
    start_ns: int
    end_ns: int
    zero_stamp_is_unset: bool  # False for our own files, where 0 is a real stamp (e.g. images at t=0)

    def topics(self) -> dict[str, str]: ...

    def counts(self) -> dict[str, int]: ...

    def messages(self, topic: str, start_ns: int | None, end_ns: int | None) -> Iterator[RawMessage]: ...

    def close(self) -> None: ...


class McapContainer:
    def __init__(self, path: Path, recover: bool) -> None:
        self.path = path
        self._recording = McapRecording(path, recover=recover)
        self.start_ns = self._recording.start_ns
        self.end_ns = self._recording.end_ns
        metadata = set(self._recording.metadata())
        self.zero_stamp_is_unset = not {"perception.recording", "perception.drive"} & metadata
        self.synthetic = "perception.synth" in metadata  # a drive `perception synth` rendered

    def topics(self) -> dict[str, str]:
        return self._recording.topics()

    def counts(self) -> dict[str, int]:
        channels = self._recording.channels
        out: dict[str, int] = {}
        for channel_id, count in self._recording.message_counts.items():
            if channel_id in channels:
                topic = channels[channel_id].topic
                out[topic] = out.get(topic, 0) + count
        return out

    def messages(self, topic: str, start_ns: int | None, end_ns: int | None) -> Iterator[RawMessage]:
        for schema, channel, message in self._recording.messages([topic], start_ns, end_ns):
            yield message.log_time, schema.name if schema else "", channel.message_encoding, message.data

    def close(self) -> None:
        self._recording.close()


# what rosbags (or sqlite under it) raises on a damaged bag
_BAG_DAMAGE = (sqlite3.Error, struct.error, ValueError, KeyError, IndexError, EOFError, OSError, UnicodeError)


class RosbagContainer:
    """rosbag2 (folder, or its .db3/.mcap file) and ROS 1 (.bag) through rosbags' readers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise RecordingError(f"bag {str(path)!r} does not exist", "give a rosbag2 folder or a ROS 1 .bag file")
        ros1 = path.suffix == ".bag"
        module = require("rosbags.rosbag1" if ros1 else "rosbags.rosbag2", "rosbag replay",
                         "pip install 'perception-node[replay]'")
        errors: list[type[BaseException]] = [module.ReaderError, *_BAG_DAMAGE]  # type: ignore[attr-defined]
        apsw = sys.modules.get("apsw")  # rosbags' rosbag2 sqlite3 reader uses apsw; its errors are not sqlite3's
        if apsw is not None:
            errors.append(apsw.Error)
        self._errors = tuple(errors)
        self.encoding = "ros1" if ros1 else "cdr"
        self.zero_stamp_is_unset = True
        try:
            self._reader: Any = module.Reader(path)  # type: ignore[attr-defined]
            self._reader.open()
        except self._errors as exc:
            raise CorruptRecordingError(f"bag {str(path)!r} cannot be opened ({exc})",
                                        "check that it is a rosbag2 folder or ROS 1 .bag, not damaged") from exc
        self.start_ns = int(self._reader.start_time) if self._reader.message_count else 0
        self.end_ns = int(self._reader.end_time) if self._reader.message_count else 0

    def topics(self) -> dict[str, str]:
        return {c.topic: c.msgtype for c in self._reader.connections}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for connection in self._reader.connections:
            out[connection.topic] = out.get(connection.topic, 0) + int(connection.msgcount)
        return out

    def messages(self, topic: str, start_ns: int | None, end_ns: int | None) -> Iterator[RawMessage]:
        connections = [c for c in self._reader.connections if c.topic == topic]
        try:
            for connection, log_time, data in self._reader.messages(connections, start=start_ns, stop=end_ns):
                encoding = self.encoding
                if encoding == "cdr":
                    encoding = getattr(connection.ext, "serialization_format", "cdr") or "cdr"
                yield int(log_time), connection.msgtype, encoding, data
        except self._errors as exc:
            raise CorruptRecordingError(f"bag {str(self.path)!r} is damaged ({type(exc).__name__}: {exc})",
                                        "re-record or restore it") from exc

    def close(self) -> None:
        self._reader.close()


def _seconds(uri: SourceUri, key: str) -> float | None:
    if key not in uri.options:
        return None
    value = uri.float_option(key, 0.0)
    if value < 0:
        raise RecordingError(f"{key}={value:g} in {uri.raw!r} is negative",
                             f"{key} counts seconds from the recording's start, e.g. {key}=12.5")
    return value


class _ReplaySource:
    """Frames of one image topic of a recording, in order, as (bgr, stamp_ns)."""

    live = False
    kind = "recording"
    synthetic = False  # frames rendered by perception.synth (known once open)
    OPTIONS: tuple[str, ...] = ("topic", "start", "end", "loop", "stamp")

    def __init__(self, uri: SourceUri) -> None:
        uri.check_options(self.OPTIONS)
        self.uri = uri
        self.path = Path(uri.target).expanduser()
        self.start_s = _seconds(uri, "start")
        self.end_s = _seconds(uri, "end")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise RecordingError(f"end={self.end_s:g} is not after start={self.start_s:g} in {uri.raw!r}",
                                 "give an end later than the start (seconds from the recording's start)")
        self.loop = uri.option("loop", "0").lower() in ("1", "true", "yes")
        self.stamp_mode = uri.option("stamp", "header")
        if self.stamp_mode not in ("header", "log"):
            raise RecordingError(f"stamp={self.stamp_mode!r} in {uri.raw!r} is not known",
                                 "use stamp=header or stamp=log")
        self.topic = ""
        self._container: Container | None = None
        self._messages: Iterator[RawMessage] = iter(())
        self._peeked: tuple[Any, int, str] | None = None
        self._origin_ns: int | None = None  # stamp of the topic's first frame: where windows count from
        self._offset_ns = 0  # added to every stamp after a loop, so stamps keep increasing
        self._first_stamp: int | None = None
        self._last_stamp: int | None = None
        self._last_interval_ns = 100_000_000
        self.passes = 0

    def _open_container(self) -> Container:
        raise NotImplementedError

    def open(self) -> None:
        self.close()
        self._offset_ns, self._first_stamp, self._last_stamp, self.passes = 0, None, None, 0
        container = self._open_container()
        try:
            self.topic = self._choose_topic(container)
            self.synthetic = bool(getattr(container, "synthetic", False))
            self._container = container
            self._origin_ns = None
            self._restart(container)
            self._peeked = self._next_in_window()
            if self._peeked is None:
                counts = container.counts().get(self.topic, 0)
                end = "the end" if self.end_s is None else f"{self.end_s:g} s"
                where = "" if counts == 0 else f" between {self.start_s or 0:g} s and {end}"
                raise EmptyRecordingError(f"{self.kind} {str(self.path)!r} has no messages on {self.topic!r}{where} "
                                          f"({counts} in all)", "choose another topic or time range")
        except BaseException:
            container.close()
            self._container = None
            raise

    def _choose_topic(self, container: Container) -> str:
        topics = container.topics()
        counts = container.counts()
        images = {t: kind for t, kind in topics.items() if is_image_type(kind)}
        wanted = self.uri.options.get("topic")
        if wanted is not None:
            if wanted not in topics:
                raise TopicError(f"topic {wanted!r} is not in {self.kind} {str(self.path)!r}; image topics: "
                                 f"{topic_listing(images)}", "pass one of them as ?topic=NAME (or in ?topics=A,B)")
            if wanted not in images:
                raise TopicError(f"topic {wanted!r} in {str(self.path)!r} has type {topics[wanted]!r}, not an "
                                 f"image; image topics: {topic_listing(images)}", "pass an image topic as ?topic=NAME")
            return wanted
        with_messages = {t: k for t, k in images.items() if counts.get(t, 1) > 0}
        if len(with_messages) == 1:
            return next(iter(with_messages))
        if not with_messages:
            if not topics or not any(counts.values()):
                raise EmptyRecordingError(f"{self.kind} {str(self.path)!r} holds no messages",
                                          "record something first, or check the file")
            raise TopicError(f"{self.kind} {str(self.path)!r} has no image topic with messages; topics: "
                             f"{topic_listing(topics)}", "replay a recording with sensor_msgs or Foxglove images")
        raise TopicError(f"{self.kind} {str(self.path)!r} has several image topics: {topic_listing(with_messages)}",
                         "choose one with ?topic=NAME")

    def _restart(self, container: Container) -> None:
        self._messages = container.messages(self.topic, None, None)

    def _next_in_window(self) -> tuple[Any, int, str] | None:
        """(decoded image message, its stamp, what) of the next frame inside start/end, or None.

        The window is measured on the stamps this source delivers (header stamps, or log time
        with stamp=log) from the topic's first frame, so it means the same in every recording.
        """
        assert self._container is not None
        for log_time, msgtype, encoding, data in self._messages:
            what = f"{self.kind} {str(self.path)!r} topic {self.topic!r} at log time {log_time}"
            if msgtype in FOXGLOVE_IMAGES:
                image = decode_foxglove_image(data, msgtype, encoding, what)
            else:
                image = ros_images.decode_image_message(data, normalize_type(msgtype), encoding, what)
            unset = image.stamp_ns == 0 and self._container.zero_stamp_is_unset
            recorded = log_time if self.stamp_mode == "log" or unset else image.stamp_ns
            if self._origin_ns is None:
                self._origin_ns = recorded
            since_ns = recorded - self._origin_ns
            if self.start_s is not None and since_ns < round(self.start_s * 1e9):
                continue
            if self.end_s is not None and since_ns >= round(self.end_s * 1e9):
                return None
            return image, recorded, what
        return None

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._container is None:
            return None
        message = self._peeked if self._peeked is not None else self._next_in_window()
        self._peeked = None
        if message is None and self.loop and self._first_stamp is not None and self._last_stamp is not None:
            self.passes += 1
            self._offset_ns += self._last_stamp - self._first_stamp + self._last_interval_ns
            self._first_stamp = None
            self._restart(self._container)
            message = self._next_in_window()
        if message is None:
            return None
        image, recorded, what = message
        bgr = ros_images.message_to_bgr(image, what)
        if self._first_stamp is None:
            self._first_stamp = recorded
        elif self._last_stamp is not None and recorded > self._last_stamp:
            self._last_interval_ns = recorded - self._last_stamp
        self._last_stamp = recorded
        return bgr, recorded + self._offset_ns

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._peeked = None
        self._messages = iter(())


class McapSource(_ReplaySource):
    """`mcap:FILE`: our recordings and drives; ROS 2/ROS 1 sensor_msgs or Foxglove image topics in any MCAP."""

    kind = "recording"
    OPTIONS = (*_ReplaySource.OPTIONS, "recover")

    def _open_container(self) -> Container:
        recover = self.uri.option("recover", "0").lower() in ("1", "true", "yes")
        return McapContainer(self.path, recover)


class RosbagSource(_ReplaySource):
    """`rosbag:PATH`: a rosbag2 folder (sqlite3 or mcap storage) or a ROS 1 .bag, read without ROS."""

    kind = "bag"

    def _open_container(self) -> Container:
        return RosbagContainer(self.path)
