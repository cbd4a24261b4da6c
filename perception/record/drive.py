"""Drive files: camera frames (and optional panoptic ground truth) in one MCAP file.

Layout (see docs/recording.md):
- camera: `/camera/image/compressed` sensor_msgs/msg/CompressedImage (format "jpeg" or "png")
  or `/camera/image` sensor_msgs/msg/Image (bgr8), ROS 2 CDR. Foxglove, ROS 2 tools and our
  own replay read it; header.stamp and log time both carry stamp_ns.
- ground truth: `/ground_truth`, msgpack (no schema), one message per frame that has one:
  {"stamp_ns", "dtype", "id_map_png": 16-bit PNG bytes, "segments": {"id", "class_id",
  "instance_id", "is_thing"}}. Lossless.
- a `perception.drive` metadata record names the topics and the format version.

DriveWriter writes to a temporary file next to the target and renames it into place on
close(), so a reader (or a cache check) never sees a half-written drive; leaving the `with`
block with an exception (KeyboardInterrupt included) discards the temporary file, and the next
writer in the folder removes those of killed processes (perception.record.temp_files).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import cv2
import msgpack
import numpy as np
from mcap.writer import Writer

from perception.record import ros_images
from perception.record.errors import (
    CorruptRecordingError,
    EmptyRecordingError,
    RecordingWriteError,
    TopicError,
    topic_listing,
)
from perception.record.image_channel import ImageChannel, check_bgr, chunk_compression
from perception.record.mcap_file import McapRecording
from perception.record.temp_files import sweep_stale, temp_path

DRIVE_FORMAT = "perception.drive"
DRIVE_VERSION = "1"
GROUND_TRUTH_TOPIC = "/ground_truth"
GROUND_TRUTH_FORMAT = "perception.ground_truth"
CHUNK_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class GtSegment:
    id: int  # value in the id map, > 0
    class_id: int
    instance_id: int
    is_thing: bool


@dataclass(frozen=True)
class GroundTruth:
    """Panoptic ground truth: id map (H, W) uint16/uint32, 0 = void, and what each id is."""

    id_map: np.ndarray
    segments: tuple[GtSegment, ...]

    def __post_init__(self) -> None:
        if self.id_map.ndim != 2 or self.id_map.dtype not in (np.uint16, np.uint32):
            raise RecordingWriteError(f"ground-truth id_map must be 2-D uint16/uint32, got "
                                      f"{self.id_map.shape} {self.id_map.dtype}", "build it as uint16")
        ids = [segment.id for segment in self.segments]
        if len(set(ids)) != len(ids) or any(i <= 0 for i in ids):
            raise RecordingWriteError("ground-truth segment ids must be unique and > 0 (0 is void)",
                                      "number the segments 1..N")


@dataclass(frozen=True)
class DriveFrame:
    stamp_ns: int
    bgr: np.ndarray
    ground_truth: GroundTruth | None


def encode_ground_truth(stamp_ns: int, truth: GroundTruth) -> bytes:
    if truth.id_map.size and int(truth.id_map.max()) > np.iinfo(np.uint16).max:
        raise RecordingWriteError("ground-truth ids above 65535 cannot be stored as a 16-bit PNG",
                                  "renumber the segments 1..N")
    ok, png = cv2.imencode(".png", truth.id_map.astype(np.uint16, copy=False))
    if not ok:
        raise RecordingWriteError(f"OpenCV could not encode a {truth.id_map.shape} id map as PNG",
                                  "give a non-empty 2-D id map")
    segments = truth.segments
    return msgpack.packb({
        "stamp_ns": stamp_ns,
        "dtype": str(truth.id_map.dtype),
        "id_map_png": png.tobytes(),
        "segments": {
            "id": [s.id for s in segments],
            "class_id": [s.class_id for s in segments],
            "instance_id": [s.instance_id for s in segments],
            "is_thing": [bool(s.is_thing) for s in segments],
        },
    })


def decode_ground_truth(data: bytes, what: str) -> tuple[int, GroundTruth]:
    try:
        body = msgpack.unpackb(data)
        id_map = cv2.imdecode(np.frombuffer(body["id_map_png"], np.uint8), cv2.IMREAD_UNCHANGED)
        if id_map is None or id_map.ndim != 2:
            raise ValueError("id map PNG does not decode to a 2-D image")
        table = body["segments"]
        segments = tuple(GtSegment(int(i), int(c), int(n), bool(t)) for i, c, n, t in
                         zip(table["id"], table["class_id"], table["instance_id"], table["is_thing"], strict=True))
        truth = GroundTruth(id_map.astype(np.dtype(body["dtype"]), copy=False), segments)
        return int(body["stamp_ns"]), truth
    except (ValueError, KeyError, TypeError, msgpack.UnpackException, RecordingWriteError) as exc:
        raise CorruptRecordingError(f"{what} is not a valid ground-truth message ({exc})",
                                    "the drive is damaged; regenerate it") from exc


class DriveWriter:
    """Writes a drive file atomically (temporary file renamed on close)."""

    def __init__(self, path: str | os.PathLike[str], *, image_format: str = "jpeg",
                 metadata: dict[str, dict[str, str]] | None = None, jpeg_quality: int = 90) -> None:
        self.path = Path(path)
        sweep_stale(self.path.parent)
        self._tmp = temp_path(self.path)
        self._file: IO[bytes] | None = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        try:
            self._writer = Writer(self._file, chunk_size=CHUNK_SIZE, compression=chunk_compression(image_format))
            self._writer.start(profile="ros2", library="perception")
            self._images = ImageChannel(self._writer, image_format, jpeg_quality=jpeg_quality)
            self._gt_channel = self._writer.register_channel(
                topic=GROUND_TRUTH_TOPIC, message_encoding="msgpack", schema_id=0,
                metadata={"format": GROUND_TRUTH_FORMAT, "version": DRIVE_VERSION})
            self._writer.add_metadata(DRIVE_FORMAT, {
                "version": DRIVE_VERSION, "image_topic": self._images.topic,
                "ground_truth_topic": GROUND_TRUTH_TOPIC, "image_format": image_format})
            for name, values in (metadata or {}).items():
                self._writer.add_metadata(name, {str(k): str(v) for k, v in values.items()})
        except BaseException:
            self.abort()
            raise
        self._last_stamp = -1
        self.frames = 0

    def write_frame(self, stamp_ns: int, bgr: np.ndarray, ground_truth: GroundTruth | None = None) -> None:
        if self._file is None:
            raise RecordingWriteError(f"drive {str(self.path)!r} is already closed", "open a new DriveWriter")
        check_bgr(bgr, "a drive frame")
        if int(stamp_ns) <= self._last_stamp:
            raise RecordingWriteError(f"drive frame stamps must increase: {stamp_ns} after {self._last_stamp}",
                                      "give each frame a later stamp_ns (nanoseconds, >= 0)")
        stamp_ns = int(stamp_ns)
        self._images.write(stamp_ns, bgr, stamp_ns)
        if ground_truth is not None:
            if ground_truth.id_map.shape != bgr.shape[:2]:
                raise RecordingWriteError(f"ground-truth id map {ground_truth.id_map.shape} does not match the "
                                          f"image {bgr.shape[:2]}", "give an id map of the image's size")
            self._writer.add_message(self._gt_channel, log_time=stamp_ns, publish_time=stamp_ns,
                                     data=encode_ground_truth(stamp_ns, ground_truth), sequence=self.frames)
        self._last_stamp = stamp_ns
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._file is None:
            return
        self._writer.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop what was written; the target path is left untouched."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> DriveWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _image_topic(recording: McapRecording) -> str:
    if recording.message_count == 0:
        raise EmptyRecordingError(f"drive {str(recording.path)!r} holds no messages", "write at least one frame")
    declared = recording.metadata().get(DRIVE_FORMAT, {}).get("image_topic")
    topics = recording.topics()
    if declared and declared in topics:
        return declared
    images = {t: kind for t, kind in topics.items() if kind in ros_images.IMAGE_TYPES}
    if len(images) == 1:
        return next(iter(images))
    problem = "holds no image topic" if not images else "holds several image topics"
    raise TopicError(f"drive {str(recording.path)!r} {problem}; topics: {topic_listing(topics)}",
                     "write drives with DriveWriter (or replay with mcap:PATH?topic=NAME)")


def read_drive(path: str | os.PathLike[str], *, recover: bool = False,
               ground_truth: bool = True) -> Iterator[DriveFrame]:
    """Frames of a drive in stamp order, each with its ground truth when the drive has one.

    recover=True reads a drive whose writer was killed up to its last complete chunk.
    ground_truth=False leaves the ground truth undecoded (None): a replay into the node needs only
    the images, and the 16-bit PNG id map costs more to decode than a raw frame.
    """
    with McapRecording(path, recover=recover) as recording:
        image_topic = _image_topic(recording)
        pending: DriveFrame | None = None
        topics = [image_topic, GROUND_TRUTH_TOPIC] if ground_truth else [image_topic]
        for schema, channel, message in recording.messages(topics):
            what = f"drive {str(recording.path)!r} topic {channel.topic!r} at log time {message.log_time}"
            if channel.topic == GROUND_TRUTH_TOPIC:
                stamp_ns, truth = decode_ground_truth(message.data, what)
                if pending is not None and pending.stamp_ns == stamp_ns:
                    pending = DriveFrame(pending.stamp_ns, pending.bgr, truth)
                continue
            if pending is not None:
                yield pending
            image = ros_images.decode_image_message(message.data, schema.name if schema else "",
                                                    channel.message_encoding, what)
            pending = DriveFrame(image.stamp_ns, ros_images.message_to_bgr(image, what), None)
        if pending is None:
            raise EmptyRecordingError(f"drive {str(recording.path)!r} has no frames on {image_topic!r}",
                                      "write at least one frame")
        yield pending


def read_ground_truth(path: str | os.PathLike[str]) -> Generator[tuple[int, GroundTruth], None, None]:
    """(stamp_ns, ground truth) of every frame that has one, without decoding the images; none
    for a file without a ground-truth topic (a recording, another tool's MCAP)."""
    with McapRecording(path) as recording:
        if GROUND_TRUTH_TOPIC not in recording.topics():
            return
        for _schema, channel, message in recording.messages([GROUND_TRUTH_TOPIC]):
            yield decode_ground_truth(message.data, f"drive {str(recording.path)!r} topic {channel.topic!r} "
                                                    f"at log time {message.log_time}")
