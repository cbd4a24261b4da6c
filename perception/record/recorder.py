"""The node's recorder: input frames, every published message and Foxglove overlays in one MCAP.

Channels (see docs/recording.md):
- `/camera/image/compressed` (JPEG/PNG) or `/camera/image` (raw bgr8): sensor_msgs in ROS 2 CDR,
  header.stamp = the frame's stamp_ns, so `mcap:` replay gives back the recorded time;
- `/camera/annotations`: foxglove.ImageAnnotations (JSON), contours and labels of each thing;
- a multi-camera node records each camera on its own channels instead: `/<camera>/image/compressed`
  (or `/<camera>/image`) and `/<camera>/annotations`;
- one channel per ZeroMQ topic (e.g. `perception/cam0/frame/`), encoding `msgpack`: each message
  is a msgpack array of the multipart frames exactly as published, topic first; the channel
  metadata carries the wire schema version;
- metadata records: whatever the node passes (launch config, model card, versions) plus
  `perception.recording` (layout) and `perception.recorder` (library versions).

The file is written in place (not renamed at the end) so that a killed process leaves a
readable file: chunks of at most CHUNK_SIZE bytes, closed and flushed to the OS at least every
`flush_interval_s` seconds, each with a CRC. A SIGKILL loses the chunk being filled, at most
about one second. close() writes the index and summary.

Log time is the source's clock: a frame's stamp_ns for its image, its overlay and its published
frame message, and the latest frame stamp for status, metadata and stats messages (those sent
before the first frame wait for it; with live_clock, for a camera whose stamps are wall
clock, they are logged at the wall clock at once, so hours without a frame stay on disk). So
the Foxglove timeline and `mcap:?start=&end=` windows show the drive's own time even for a
recording made at --rate 0, where frames arrive a few ms apart. Publish time is the wall
clock when the recorder got the message.

A deterministic recorder (a lock-step replay's, `--deterministic`) writes the same bytes on every
run of the same drive: publish time is the log time, published messages are kept in their
lock-step form (perception.wire.lockstep: no process time, no heartbeats, stats or previews,
a metadata message only when it changes), and chunks are closed by drive time, not wall time.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, cast

import cv2
import mcap
import msgpack
import numpy as np
from mcap.writer import Writer

from perception import __version__
from perception.core.frame import Frame, monotonic_ns
from perception.core.result import FrameResult
from perception.record import image_annotations
from perception.record.errors import RecordingError, RecordingWriteError
from perception.record.image_channel import (
    COMPRESSED_TOPIC,
    RAW_TOPIC,
    ImageChannel,
    check_image_format,
    chunk_compression,
)
from perception.wire.lockstep import lockstep_form
from perception.wire.schema import SCHEMA_VERSION

RECORDING_FORMAT = "perception.recording"
RECORDING_VERSION = "1"
ANNOTATIONS_TOPIC = "/camera/annotations"
MESSAGE_ENCODING = "msgpack"
CHUNK_SIZE = 4 * 1024 * 1024


class _DirectFile:
    """A write-only file where every write() reaches the OS at once, whole.

    mcap's writer hands over each finished chunk (and its indexes) as one bytes object; with no
    user-space buffer in between, a killed process leaves whole records on disk, not a chunk
    half in a buffer that died with it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._position = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:  # disk full, device gone: the recording cannot go on
            raise RecordingWriteError(f"cannot write recording {str(self.path)!r} ({exc.strerror})",
                                      "free disk space or record to another disk") from exc
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        """Nothing is buffered here."""

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        os.close(self._fd)


def _is_mcap(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(MCAP_MAGIC)) == MCAP_MAGIC


MCAP_MAGIC = b"\x89MCAP0\r\n"
FRAME_TOPIC_SUFFIX = b"/frame/"
META_TOPIC_SUFFIX = b"/meta/"


def _frame_stamp(header: bytes) -> int | None:
    """stamp_ns of a published frame message's msgpack header."""
    try:
        stamp = msgpack.unpackb(header).get("stamp_ns")
    except (ValueError, AttributeError, msgpack.UnpackException):
        return None
    return stamp if isinstance(stamp, int) and stamp >= 0 else None


class Recorder:
    """Context manager; every method is called from the node's worker thread only (no locking)."""

    def __init__(self, path: str | os.PathLike[str], *, image_format: str = "jpeg",
                 metadata: dict[str, dict[str, str]] | None = None, flush_interval_s: float = 1.0,
                 chunk_size: int = CHUNK_SIZE, cameras: Sequence[str] = (), live_clock: bool = False,
                 deterministic: bool = False) -> None:
        """cameras: the node's camera names when it has more than one (a channel pair per camera)."""
        self.path = Path(path)
        self.live_clock = live_clock  # frame stamps are wall clock (live sources)
        if deterministic and live_clock:
            raise RecordingError("a deterministic recording needs a replay: a live camera's stamps are the wall clock",
                                 "record live cameras without --deterministic")
        self.deterministic = deterministic
        check_image_format(image_format)
        if self.path.is_dir():
            raise RecordingError(f"cannot record to {str(self.path)!r}: it is a folder",
                                 "give a file name ending .mcap")
        if self.path.is_file() and not _is_mcap(self.path):
            # a typo must never overwrite an input (an image, a launch file) with a recording
            raise RecordingError(f"cannot record to {str(self.path)!r}: it exists and is not a recording",
                                 "give a new file name ending .mcap")
        try:
            file = _DirectFile(self.path)
        except OSError as exc:
            raise RecordingError(f"cannot create recording {str(self.path)!r} ({exc.strerror})",
                                 "check that the folder exists and is writable") from exc
        self._file: _DirectFile | None = file
        self._wire_channels: dict[bytes, int] = {}
        self._sequences: dict[int, int] = {}
        try:
            self._writer = Writer(cast(IO[bytes], file), chunk_size=chunk_size,
                                  compression=chunk_compression(image_format))
            self._writer.start(profile="ros2", library=f"perception {__version__}")
            schema_id = self._writer.register_schema(image_annotations.SCHEMA_NAME, "jsonschema",
                                                     image_annotations.SCHEMA_BYTES)
            # one camera keeps the single-camera names, so its recordings replay as before
            self._channels: dict[str | None, tuple[ImageChannel, int]] = {}
            for camera in (cameras if len(cameras) > 1 else [None]):
                images = ImageChannel(self._writer, image_format, frame_id=camera or "camera",
                                      topic=_image_topic(camera, image_format))
                annotations = self._writer.register_channel(f"/{camera}/annotations" if camera else ANNOTATIONS_TOPIC,
                                                            "json", schema_id)
                self._channels[camera] = (images, annotations)
            topics = list(self._channels)
            self._writer.add_metadata(RECORDING_FORMAT, {
                "version": RECORDING_VERSION, "image_topic": ",".join(i.topic for i, _ in self._channels.values()),
                "annotations_topic": ",".join(f"/{c}/annotations" if c else ANNOTATIONS_TOPIC for c in topics),
                "cameras": ",".join(c for c in topics if c),
                "wire_schema_version": str(SCHEMA_VERSION), "wire_message_encoding": MESSAGE_ENCODING})
            self._writer.add_metadata("perception.recorder", {
                "perception": __version__, "python": platform.python_version(), "numpy": np.__version__,
                "opencv": cv2.__version__, "mcap": getattr(mcap, "__version__", "unknown")})
            for name, values in (metadata or {}).items():
                self._writer.add_metadata(name, {str(k): str(v) for k, v in values.items()})
            self._writer.flush()  # header and metadata reach the disk before the first frame
        except BaseException:
            file.close()
            self._file = None
            raise
        self.flush_interval_ns = int(flush_interval_s * 1e9)
        self._last_flush_ns = 0 if deterministic else monotonic_ns()
        self._last_metadata: dict[int, dict[str, object]] = {}  # deterministic: per channel, without seq
        self.frames = 0
        self.messages = 0
        self._results: dict[str | None, int] = {}
        self._clock_ns: int | None = None  # the latest frame stamp: log time of messages without one
        self._waiting: list[tuple[int, int, bytes, int | None]] = []  # (channel, sequence, data, publish time)

    # -- what the node calls ---------------------------------------------------------------------

    @property
    def results(self) -> int:
        return sum(self._results.values())

    def _channel(self, camera: str | None) -> tuple[str | None, ImageChannel, int]:
        key = camera if len(self._channels) > 1 else None
        if key not in self._channels:
            raise RecordingWriteError(f"camera {camera!r} is not one this recording was opened for",
                                      f"name it in Recorder(cameras=...): {[c for c in self._channels if c]}")
        return (key, *self._channels[key])

    def record_frame(self, frame: Frame, camera: str | None = None) -> None:
        """The input image, header stamp = frame.stamp_ns (the source's clock)."""
        self._check_open()
        _, images, _ = self._channel(camera)
        self._advance_clock(frame.stamp_ns)
        images.write(frame.stamp_ns, frame.image, frame.stamp_ns)
        self.frames += 1
        self._maybe_flush()

    def record_message(self, topic: bytes, parts: list[bytes]) -> None:
        """One published multipart message; the Publisher's tap."""
        self._check_open()
        if self.deterministic:
            lockstep = lockstep_form(parts)
            if lockstep is None:
                return
            parts = lockstep
        channel = self._wire_channels.get(topic)
        if channel is None:
            channel = self._writer.register_channel(
                topic.decode("utf-8", errors="replace"), MESSAGE_ENCODING, 0,
                {"wire_schema_version": str(SCHEMA_VERSION), "layout": "msgpack array of the multipart frames"})
            self._wire_channels[topic] = channel
        if self.deterministic and topic.endswith(META_TOPIC_SUFFIX) and self._repeats_metadata(channel, parts):
            return
        sequence = self._sequences.get(channel, 0)
        self._sequences[channel] = sequence + 1
        data = msgpack.packb([bytes(p) for p in parts], use_bin_type=True)
        if topic.endswith(FRAME_TOPIC_SUFFIX) and len(parts) > 1:
            self._advance_clock(_frame_stamp(parts[1]))
        if self._clock_ns is None and self.live_clock:
            now = time.time_ns()  # the clock the camera's stamps will be in
            self._writer.add_message(channel, log_time=now, publish_time=now, sequence=sequence, data=data)
        elif self._clock_ns is None:
            self._waiting.append((channel, sequence, data, None if self.deterministic else time.time_ns()))
        else:
            self._writer.add_message(channel, log_time=self._clock_ns,
                                     publish_time=self._publish_time(self._clock_ns), sequence=sequence, data=data)
        self.messages += 1
        self._maybe_flush()

    def record_result(self, result: FrameResult, class_names: list[str]) -> None:
        """Foxglove overlay of one result, stamped like its input frame so the Image panel pairs them."""
        self._check_open()
        key, _, annotations = self._channel(result.camera)
        self._advance_clock(result.stamp_ns)
        sequence = self._results.get(key, 0)
        self._writer.add_message(annotations, log_time=result.stamp_ns,
                                 publish_time=self._publish_time(result.stamp_ns),
                                 sequence=sequence,
                                 data=image_annotations.encode(result.stamp_ns, result.segmentation, class_names))
        self._results[key] = sequence + 1
        self._maybe_flush()

    def close(self) -> None:
        """Write the index and summary; the file is then a complete MCAP. Safe to call twice."""
        if self._file is None:
            return
        try:
            if self._waiting:  # no frame ever came: the wall clock is the only clock there is
                self._advance_clock(0 if self.deterministic else time.time_ns())
            self._writer.finish()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None

    # -- internals -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._file is None:
            raise RecordingWriteError(f"recording {str(self.path)!r} is already closed", "open a new Recorder")

    def _advance_clock(self, stamp_ns: int | None) -> None:
        if stamp_ns is None:
            return
        self._clock_ns = stamp_ns if self._clock_ns is None else max(self._clock_ns, stamp_ns)
        for channel, sequence, data, publish_ns in self._waiting:
            self._writer.add_message(channel, log_time=self._clock_ns,
                                     publish_time=self._clock_ns if publish_ns is None else publish_ns,
                                     sequence=sequence, data=data)
        self._waiting.clear()

    def _publish_time(self, log_time_ns: int) -> int:
        """The wall clock when the message came; a deterministic recording's is its log time."""
        return log_time_ns if self.deterministic else time.time_ns()

    def _repeats_metadata(self, channel: int, parts: list[bytes]) -> bool:
        """A metadata message sent again unchanged (to a subscriber that just joined)."""
        header = msgpack.unpackb(parts[1])
        header.pop("seq", None)
        if self._last_metadata.get(channel) == header:
            return True
        self._last_metadata[channel] = header
        return False

    def _maybe_flush(self) -> None:
        # a chunk is closed by size inside mcap's writer; this bounds it by time as well (the
        # drive's time in a deterministic recording, so its chunks fall the same on every run)
        now = (self._clock_ns or 0) if self.deterministic else monotonic_ns()
        if now - self._last_flush_ns >= self.flush_interval_ns:
            self._writer.flush()
            self._last_flush_ns = now

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _image_topic(camera: str | None, image_format: str) -> str:
    topic = RAW_TOPIC if image_format == "raw" else COMPRESSED_TOPIC
    return topic.replace("/camera/", f"/{camera}/", 1) if camera else topic
